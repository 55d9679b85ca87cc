"""Build the Dask graph per (checkpoint, layer), reduce, compute metrics, write results, resume.

For one (checkpoint, layer) the activations are a (sample, token, feature) slab chunked by
sample block. Each block gives, per token group, count/mean/co-moment (chunk), merged
pairwise (combine) into the covariance, eigenvalues and metrics (aggregate); the same block
also gives unit-vector sums (cosine anisotropy) and token Gram sums (correlation). All tokens
concatenated use the N x N Gram (exact) or randomized SVD. Units of a few layers whose
co-moments fit a memory budget are computed together and written out before the next, so all
covariance matrices of a model never sit in memory at once; each written unit is marked done,
and a re-run skips it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dask
import dask.threaded
import numpy as np
import xarray as xr
from dask import delayed

from tgo_analysis import names as N
from tgo_analysis.correlation import (
    GramSums,
    mean_lower_triangle,
    merge_gram_sums,
    token_correlation,
    token_gram_sums,
)
from tgo_analysis.device import LazySlab, check_device, layer_spectra
from tgo_analysis.intrinsic import subsample_indices, twonn_dimension
from tgo_analysis.metrics import (
    DEFAULT_FIT_RANGE,
    cosine_anisotropy,
    metric_attrs,
    spectral_metrics,
)
from tgo_analysis.moments import (
    Moments,
    chunk_moments,
    covariance,
    merge_moments_into,
    unit_vector_sum,
)
from tgo_analysis.spectra import covariance_eigenvalues, randomized_eigenvalues
from tgo_store import schema as S
from tgo_store.errors import TgoError

PER_TOKEN = (N.ALPHA, N.EFFECTIVE_RANK, N.STABLE_RANK, N.PARTICIPATION_RATIO, N.SPECTRAL_ENTROPY,
             N.SPECTRAL_FLATNESS, N.TOP1_SHARE)
METRICS: tuple[str, ...] = (N.EIGENVALUES, *PER_TOKEN, N.COSINE_ANISOTROPY, N.TOKEN_CORRELATION,
                            "all_tokens", N.INTRINSIC_DIMENSION, N.ALPHA_CLUSTER)
TRUNCATED_OK = (N.ALPHA, N.TOP1_SHARE, N.STABLE_RANK)  # what a truncated spectrum supports (SPEC 3)
GRAM_MAX_SAMPLES = 4096
UNIT_MEMORY_BYTES = 1 << 30
GROUP_MEMORY_BYTES = 256 << 20
DONE_PREFIX = "_tgo/done"


@dataclass(frozen=True)
class Options:
    metrics: tuple[str, ...]
    fit_range: tuple[int, int]
    id_samples: int
    n_clusters: int
    use_umap: bool
    all_tokens: str
    svd_rank: int
    power_iters: int
    seed: int
    device: str = "cpu"

    def wants(self, name: str) -> bool:
        return name in self.metrics

    @property
    def all_tokens_on(self) -> bool:
        return self.wants("all_tokens") and self.all_tokens != "off"


def parse_metrics(metrics: Sequence[str] | str) -> tuple[str, ...]:
    """'all', a comma-separated string or a list -> validated metric names (alpha_r2 comes with alpha)."""
    items = [metrics] if isinstance(metrics, str) else list(metrics)
    chosen: list[str] = []
    for item in items:
        for name in (s.strip() for s in item.split(",")):
            if name == "all":
                chosen += METRICS
            elif name == N.ALPHA_R2:
                chosen.append(N.ALPHA)
            elif name in (N.MEAN_TOKEN_CORRELATION,):
                chosen.append(N.TOKEN_CORRELATION)
            elif name.endswith(N.ALL_TOKENS_SUFFIX):
                chosen.append("all_tokens")
            elif name in METRICS:
                chosen.append(name)
            elif name:
                raise TgoError(f"unknown metric '{name}'; choose from all, {', '.join(METRICS)}")
    if not chosen:
        raise TgoError(f"no metric chosen; choose from all, {', '.join(METRICS)}")
    if N.ALPHA_CLUSTER in chosen and N.ALPHA not in chosen:
        chosen.append(N.ALPHA)
    return tuple(dict.fromkeys(chosen))


# ---------------------------------------------------------------- per-block tasks (chunk step)

_BLAS: Any = None


def _one_blas_thread() -> Any:
    """A context with one BLAS thread: Dask already runs one task per core.

    The threadpoolctl controller is built once per process (building it scans the loaded
    libraries: 2.6 ms, paid by every task before); entering its limit costs 0.05 ms.
    """
    global _BLAS
    if _BLAS is None:
        from threadpoolctl import ThreadpoolController

        _BLAS = ThreadpoolController()
    return _BLAS.limit(limits=1, user_api="blas")


def _limited(func: Any) -> Any:
    """``func`` run under one BLAS thread; module-level wrappers keep Dask's task names."""

    def run(*args: Any) -> Any:
        with _one_blas_thread():
            return func(*args)

    run.__name__ = func.__name__
    run.__qualname__ = func.__qualname__
    return run


def _block_moments(block: np.ndarray, lo: int, hi: int) -> Moments:
    return chunk_moments(block[:, lo:hi])


def _block_extras(block: np.ndarray, want_unit: bool, want_gram: bool) -> tuple[np.ndarray | None, GramSums | None, int]:
    unit = unit_vector_sum(block) if want_unit else None
    gram = token_gram_sums(block) if want_gram else None
    return unit, gram, block.shape[0]


def _merge_extras(a: tuple, b: tuple) -> tuple:
    unit = None if a[0] is None else a[0] + b[0]
    gram = None if a[1] is None else merge_gram_sums(a[1], b[1])
    return unit, gram, a[2] + b[2]


def _tree(items: list, merge: Any) -> Any:
    while len(items) > 1:
        items = [delayed(merge)(items[i], items[i + 1]) if i + 1 < len(items) else items[i]
                 for i in range(0, len(items), 2)]
    return items[0]


# ---------------------------------------------------------------- aggregate step

def _spectra_result(eigs: np.ndarray, trace: np.ndarray, n_features: int,
                    fit_range: tuple[int, int]) -> dict[str, np.ndarray]:
    out = spectral_metrics(eigs, n_features, fit_range)
    out[N.EIGENVALUES] = eigs
    out["trace"] = trace
    return out


def _finish_group(m: Moments, n_features: int, fit_range: tuple[int, int]) -> dict[str, np.ndarray]:
    eigs = covariance_eigenvalues(covariance(m))
    return _spectra_result(eigs, np.trace(m.comoment, axis1=-2, axis2=-1) / (m.count - 1), n_features, fit_range)


def _device_group(lazy: LazySlab, device: str, n_features: int, fit_range: tuple[int, int]) -> dict[str, np.ndarray]:
    spectra = layer_spectra(lazy, device)
    return _spectra_result(spectra["eigenvalues"], spectra["trace"], n_features, fit_range)


def _gram_spectrum(gram: np.ndarray, n: int) -> np.ndarray:
    """Exact all-token spectrum from the un-centred N x N Gram, centred on both sides."""
    row = gram.mean(axis=1, keepdims=True)
    centred = gram - row - row.T + gram.mean()
    return covariance_eigenvalues(centred / (n - 1))


def _twonn(x: np.ndarray) -> float:
    return twonn_dimension(x.reshape(x.shape[0], -1))


_block_moments_task = _limited(_block_moments)
_merge_task = _limited(merge_moments_into)
_finish_group_task = _limited(_finish_group)
_block_extras_task = _limited(_block_extras)
_gram_spectrum_task = _limited(_gram_spectrum)
_twonn_task = _limited(_twonn)
_device_group_task = _limited(_device_group)


# ---------------------------------------------------------------- graph for one (checkpoint, layer)

def _layer_graph(slab: Any, opts: Options, n_samples: int) -> dict[str, Any]:
    """Delayed results of one (checkpoint, layer) slab (sample, token, feature)."""
    slab = slab.rechunk({0: slab.chunks[0], 1: -1, 2: -1})
    _, n_tokens, n_features = slab.shape
    blocks = list(slab.to_delayed().ravel())
    graph: dict[str, Any] = {}
    if opts.device != "cpu" and any(opts.wants(m) for m in (N.EIGENVALUES, *PER_TOKEN, "all_tokens")):
        graph["groups"] = [delayed(_device_group_task)(LazySlab(slab), opts.device, n_features, opts.fit_range)]
    elif any(opts.wants(m) for m in (N.EIGENVALUES, *PER_TOKEN, "all_tokens")):
        group = max(1, min(n_tokens, GROUP_MEMORY_BYTES // (n_features * n_features * 8)))
        graph["groups"] = []
        for lo in range(0, n_tokens, group):
            hi = min(n_tokens, lo + group)
            parts = [delayed(_block_moments_task)(b, lo, hi) for b in blocks]
            merged = _tree(parts, _merge_task)
            graph["groups"].append(delayed(_finish_group_task)(merged, n_features, opts.fit_range))
    want_unit, want_gram = opts.wants(N.COSINE_ANISOTROPY), opts.wants(N.TOKEN_CORRELATION)
    if want_unit or want_gram:
        parts = [delayed(_block_extras_task)(b, want_unit, want_gram) for b in blocks]
        graph["extras"] = _tree(parts, _merge_extras)
    flat = slab.reshape(n_samples, n_tokens * n_features)
    if opts.all_tokens_on and _all_tokens_method(opts, n_samples, n_tokens * n_features) == "gram":
        flat64 = flat.astype(np.float64)
        graph["gram_eigs"] = delayed(_gram_spectrum_task)(flat64 @ flat64.T, n_samples)
    if opts.wants(N.INTRINSIC_DIMENSION):
        idx = subsample_indices(n_samples, opts.id_samples, opts.seed)
        graph["id"] = delayed(_twonn_task)(slab[idx])
    return graph


def _all_tokens_method(opts: Options, n_samples: int, n_flat: int) -> str:
    if opts.all_tokens in ("gram", "randomized"):
        return opts.all_tokens
    return "gram" if n_samples <= GRAM_MAX_SAMPLES else "randomized"


# ---------------------------------------------------------------- results assembly

@dataclass
class Layout:
    checkpoints: np.ndarray
    layers: np.ndarray
    tokens: np.ndarray
    n_samples: int
    n_features: int
    n_rank: int


def _input_layout(act: xr.DataArray, opts: Options) -> Layout:
    _n_ckpt, _n_layer, n_samples, n_tokens, n_features = act.shape
    coords = {d: (np.asarray(act[d].values) if d in act.coords else np.arange(act.sizes[d])) for d in S.DIMS}
    n_all = min(n_samples, n_tokens * n_features)
    if opts.all_tokens_on and _all_tokens_method(opts, n_samples, n_tokens * n_features) == "randomized":
        n_all = min(opts.svd_rank, n_all)
    n_rank = max(n_features, n_all if opts.all_tokens_on else 0)
    return Layout(coords[S.CHECKPOINT], coords[S.LAYER], coords[S.TOKEN], n_samples, n_features, n_rank)


def _template(act: xr.DataArray, lay: Layout, opts: Options) -> xr.Dataset:
    """An all-NaN dataset with every requested variable, to create the output store's metadata."""
    c, n_layers, t, r = len(lay.checkpoints), len(lay.layers), len(lay.tokens), lay.n_rank
    shapes: dict[str, tuple[tuple[str, ...], tuple[int, ...]]] = {}
    cl, clt = (N.CHECKPOINT, N.LAYER), (N.CHECKPOINT, N.LAYER, N.TOKEN)
    if opts.wants(N.EIGENVALUES):
        shapes[N.EIGENVALUES] = ((*clt, N.RANK), (c, n_layers, t, r))
    for m in PER_TOKEN:
        if opts.wants(m):
            shapes[m] = (clt, (c, n_layers, t))
    if opts.wants(N.ALPHA):
        shapes[N.ALPHA_R2] = (clt, (c, n_layers, t))
    if any(opts.wants(m) for m in PER_TOKEN):
        shapes["metric_reason"] = (clt, (c, n_layers, t))
    if opts.wants(N.COSINE_ANISOTROPY):
        shapes[N.COSINE_ANISOTROPY] = (clt, (c, n_layers, t))
    if opts.wants(N.TOKEN_CORRELATION):
        shapes[N.TOKEN_CORRELATION] = ((*clt, N.TOKEN_OTHER), (c, n_layers, t, t))
        shapes[N.MEAN_TOKEN_CORRELATION] = (cl, (c, n_layers))
    if opts.all_tokens_on:
        shapes[N.all_tokens(N.EIGENVALUES)] = ((*cl, N.RANK), (c, n_layers, r))
        full = _all_tokens_method(opts, lay.n_samples, len(lay.tokens) * lay.n_features) == "gram"
        for m in (PER_TOKEN if full else TRUNCATED_OK):
            shapes[N.all_tokens(m)] = (cl, (c, n_layers))
        if full:
            shapes[N.all_tokens(N.ALPHA_R2)] = (cl, (c, n_layers))
    if opts.wants(N.INTRINSIC_DIMENSION):
        shapes[N.INTRINSIC_DIMENSION] = (cl, (c, n_layers))
    import dask.array as da

    data_vars = {}
    for name, (dims, shape) in shapes.items():
        chunks = tuple(1 if d in (N.CHECKPOINT, N.LAYER) else s for d, s in zip(dims, shape, strict=True))
        dtype = np.int8 if name == "metric_reason" else np.float64
        fill = -1 if dtype is np.int8 else np.nan
        # a fixed name: tokenizing ten arrays of NaN costs 50 ms and buys nothing here
        data_vars[name] = (dims, da.full(shape, fill, dtype=dtype, chunks=chunks, name=f"tgo-template-{name}"))
    coords: dict[str, Any] = {N.CHECKPOINT: lay.checkpoints, N.LAYER: lay.layers, N.TOKEN: lay.tokens,
                              N.RANK: np.arange(1, lay.n_rank + 1)}
    if opts.wants(N.TOKEN_CORRELATION):
        coords[N.TOKEN_OTHER] = lay.tokens
    for name, dim in S.COORDS.items():
        if name in act.coords and dim in (N.CHECKPOINT, N.LAYER, N.TOKEN):
            values = np.asarray(act[name].values)
            coords[name] = (dim, np.array([str(v) for v in values], dtype=np.dtypes.StringDType())
                            if values.dtype.kind in "OUT" else values)
    return xr.Dataset(data_vars, coords=coords)


def _unit_dataset(results: dict[str, Any], opts: Options, lay: Layout) -> dict[str, np.ndarray]:
    """Turn one (checkpoint, layer)'s computed pieces into arrays named as in SPEC section 2."""
    out: dict[str, np.ndarray] = {}
    groups = results.get("groups")
    if groups:
        merged = {k: np.concatenate([g[k] for g in groups]) for k in groups[0]}
        if opts.wants(N.EIGENVALUES):
            eig = np.full((len(lay.tokens), lay.n_rank), np.nan)
            eig[:, :lay.n_features] = merged[N.EIGENVALUES]
            out[N.EIGENVALUES] = eig
        for m in PER_TOKEN:
            if opts.wants(m):
                out[m] = merged[m]
        if opts.wants(N.ALPHA):
            out[N.ALPHA_R2] = merged[N.ALPHA_R2]
        out["metric_reason"] = merged["reason"]
        out["_trace"] = merged["trace"]
    if "extras" in results:
        unit, gram, n = results["extras"]
        if unit is not None:
            out[N.COSINE_ANISOTROPY] = cosine_anisotropy(unit, n)
        if gram is not None:
            corr = token_correlation(gram)
            out[N.TOKEN_CORRELATION] = corr
            out[N.MEAN_TOKEN_CORRELATION] = np.asarray(mean_lower_triangle(corr))
    if "id" in results:
        out[N.INTRINSIC_DIMENSION] = np.asarray(results["id"])
    return out


def _all_token_metrics(out: dict[str, np.ndarray], eigs: np.ndarray, trace: float, full: bool,
                       lay: Layout, opts: Options) -> None:
    n_flat = len(lay.tokens) * lay.n_features
    padded = np.full(lay.n_rank, np.nan)
    padded[:eigs.size] = eigs
    out[N.all_tokens(N.EIGENVALUES)] = padded
    if full:
        metrics = spectral_metrics(eigs, n_flat, opts.fit_range)
        for m in (*PER_TOKEN, N.ALPHA_R2):
            out[N.all_tokens(m)] = np.asarray(metrics[m])
        return
    metrics = spectral_metrics(eigs, n_flat, opts.fit_range)
    out[N.all_tokens(N.ALPHA)] = np.asarray(metrics[N.ALPHA])
    out[N.all_tokens(N.TOP1_SHARE)] = np.asarray(eigs[0] / trace)
    out[N.all_tokens(N.STABLE_RANK)] = np.asarray(trace / eigs[0])


# ---------------------------------------------------------------- output store

def _store_of(out: str) -> Any:
    from tgo_store.writer import open_zarr_store

    return open_zarr_store(out)


def _done_units(out: str) -> set[tuple[int, int]]:
    from zarr.core.buffer import default_buffer_prototype
    from zarr.core.sync import sync

    store = _store_of(out)

    async def collect() -> set[tuple[int, int]]:
        found = set()
        async for key in store.list_prefix(DONE_PREFIX + "/"):
            raw = await store.get(key, prototype=default_buffer_prototype())
            try:
                record = json.loads(raw.to_bytes())
                found.add((int(record["checkpoint"]), int(record["layer"])))
            except (ValueError, KeyError, AttributeError):
                continue
        return found

    return sync(collect())


def _mark_done(out: str, ci: int, li: int) -> None:
    from zarr.core.buffer import default_buffer_prototype
    from zarr.core.sync import sync

    record = json.dumps({"checkpoint": ci, "layer": li, "at": time.time()}).encode()
    sync(_store_of(out).set(f"{DONE_PREFIX}/c{ci:06d}_l{li:06d}.json",
                            default_buffer_prototype().buffer.from_bytes(record)))


def _prepare_output(out: str, template: xr.Dataset, config: dict, overwrite: bool) -> set[tuple[int, int]]:
    """Create the output store, or resume a compatible one; refuse a different existing output."""
    import zarr

    existing = None
    try:
        existing = zarr.open_group(_store_of(out), mode="r")
    except (FileNotFoundError, KeyError, ValueError):
        existing = None
    if existing is not None and not overwrite:
        previous = dict(existing.attrs).get("tgo_config")
        wanted = json.loads(json.dumps(config))
        if previous is not None and _grown_along_checkpoint(previous, wanted):
            _grow_checkpoints(out, template, wanted)
        elif previous != wanted:
            raise TgoError(f"output {out} already exists from another analysis; pass --overwrite to replace it "
                           "or choose another --out")
        return _done_units(out)
    try:
        template.to_zarr(out, mode="w", compute=False, zarr_format=3, consolidated=False)
    except (PermissionError, OSError) as exc:
        raise TgoError(f"cannot write results to {out} ({exc}); choose a writable --out") from exc
    group = zarr.open_group(_store_of(out), mode="r+")
    group.attrs["tgo_config"] = json.loads(json.dumps(config))
    for name in template.coords:  # coordinates are small: write them now
        if name in group and name not in template.dims:
            group[name][:] = template[name].values
    for name in template.dims:
        if name in group:
            group[name][:] = template[name].values
    return set()


def _grown_along_checkpoint(previous: dict, wanted: dict) -> bool:
    """Same analysis of a store that gained checkpoints since (training is still running)."""
    same = {k: v for k, v in previous.items() if k != "shape"} == {k: v for k, v in wanted.items() if k != "shape"}
    return same and previous["shape"][1:] == wanted["shape"][1:] and previous["shape"][0] < wanted["shape"][0]


def _grow_checkpoints(out: str, template: xr.Dataset, config: dict) -> None:
    """Append checkpoints to existing results: resize along `checkpoint`, keep what is written."""
    import zarr

    group = zarr.open_group(_store_of(out), mode="r+")
    n = template.sizes[N.CHECKPOINT]
    for name in list(template.data_vars) + [c for c in template.coords if template[c].dims == (N.CHECKPOINT,)]:
        if name in group and template[name].dims[:1] == (N.CHECKPOINT,):
            array = group[name]
            array.resize((n, *array.shape[1:]))
            if name in template.coords:
                array[:] = template[name].values
    group.attrs["tgo_config"] = config


def _write_unit(out: str, ci: int, li: int, arrays: dict[str, np.ndarray], template: xr.Dataset) -> None:
    """Write one (checkpoint, layer) region: whole chunks only, so parallel writers never collide."""
    import zarr

    group = zarr.open_group(_store_of(out), mode="r+")
    for name, value in arrays.items():
        if name.startswith("_") or name not in template:
            continue
        group[name][ci, li] = np.asarray(value, dtype=group[name].dtype)


# ---------------------------------------------------------------- entry point

def _validate(ds: xr.Dataset, opts: Options) -> xr.DataArray:
    act = S.validate_activations(ds)
    n_samples, n_features = act.sizes[S.SAMPLE], act.sizes[S.FEATURE]
    if n_samples < 3:
        raise TgoError(f"the store has {n_samples} samples; covariance metrics need at least 3 samples")
    if opts.wants(N.ALPHA):
        lo, hi = opts.fit_range
        if lo < 1 or hi < lo + 4:
            raise TgoError(f"alpha fit range {lo}:{hi} is invalid; give FIRST:LAST ranks with LAST >= FIRST + 4, e.g. 11:100")
        max_rank = min(n_samples - 1, n_features) - 10
        if max_rank < lo + 4:
            need = lo + 14
            raise TgoError(f"alpha fit range {lo}:{hi} lies beyond the spectrum: the covariance has at most "
                           f"{min(n_samples - 1, n_features)} nonzero eigenvalues (samples {n_samples}, features {n_features}); "
                           f"alpha needs at least {need + 1} samples and {need} features, or a lower range such as --fit-range 2:{max(6, max_rank)}")
    if opts.wants(N.INTRINSIC_DIMENSION) and min(n_samples, opts.id_samples) < 10:
        raise TgoError(f"intrinsic dimension needs at least 10 samples, got {min(n_samples, opts.id_samples)}; "
                       "raise --id-samples or leave intrinsic_dimension out of --metrics")
    return act


def analyze(ds: xr.Dataset, metrics: Sequence[str] | str = "all", *, out: str | None = None,
            overwrite: bool = False, fit_range: tuple[int, int] = DEFAULT_FIT_RANGE, id_samples: int = 2000,
            n_clusters: int = 4, use_umap: bool = False, all_tokens: str = "auto", svd_rank: int = 200,
            power_iters: int = 4, seed: int = 0, scheduler: str | None = None, workers: int | None = None,
            memory_limit: str | None = None, progress: bool = True,
            checkpoints: Sequence[int] | None = None, device: str = "cpu") -> xr.Dataset:
    """The metrics of SPEC section 3 for every (checkpoint, layer, token), out of core.

    ``checkpoints`` (indices) limits this call to those checkpoints: a sweep analyses each
    checkpoint into the same results store as soon as its ingest is complete.
    ``device``: "cpu" (numpy, a Dask task per sample block), "cuda" or "cuda:N" (per-token
    spectra streamed through the GPU with torch, ``tgo_analysis.device``), or "torch:cpu" (that
    device path on the CPU, for testing it without a GPU).
    """
    from tgo_analysis.progress import UnitProgress
    from tgo_analysis.provenance import provenance
    from tgo_analysis.scheduler import scheduler_context

    if all_tokens not in ("auto", "gram", "randomized", "off"):
        raise TgoError(f"unknown --all-tokens {all_tokens}; use auto, gram, randomized or off")
    if power_iters < 4 and all_tokens != "gram":
        raise TgoError(f"--power-iters {power_iters} is below 4; truncated spectra without power iterations inflate alpha")
    opts = Options(parse_metrics(metrics), (int(fit_range[0]), int(fit_range[1])), int(id_samples),
                   int(n_clusters), bool(use_umap), all_tokens, int(svd_rank), int(power_iters), int(seed),
                   check_device(device))
    act = _validate(ds, opts)
    lay = _input_layout(act, opts)
    template = _template(act, lay, opts)
    config = {"metrics": list(opts.metrics), "fit_range": list(opts.fit_range), "id_samples": opts.id_samples,
              "n_clusters": opts.n_clusters, "use_umap": opts.use_umap, "all_tokens": opts.all_tokens,
              "svd_rank": opts.svd_rank, "power_iters": opts.power_iters, "seed": opts.seed,
              "shape": [int(s) for s in act.shape], "source": str(ds.encoding.get("source", ""))}
    done = _prepare_output(out, template, config, overwrite) if out else set()
    computed: dict[tuple[int, int], dict[str, np.ndarray]] = {}
    started = time.perf_counter()
    chosen = range(len(lay.checkpoints)) if checkpoints is None else sorted(set(checkpoints))
    units = [(ci, li) for ci in chosen for li in range(len(lay.layers)) if (ci, li) not in done]
    per_unit = len(lay.tokens) * lay.n_features**2 * 8 * 3
    batch = max(1, UNIT_MEMORY_BYTES // max(per_unit, 1))
    with scheduler_context(scheduler, workers, memory_limit) as where, \
            UnitProgress(len(units), len(done), enabled=progress) as bar:
        for start in range(0, len(units), batch):
            chunk = units[start:start + batch]
            graphs = [_layer_graph(act.data[ci, li], opts, lay.n_samples) for ci, li in chunk]
            results = dask.compute(*graphs)
            for (ci, li), graph_result in zip(chunk, results, strict=True):
                arrays = _unit_dataset(graph_result, opts, lay)
                if opts.all_tokens_on:
                    _add_all_tokens(arrays, graph_result, act.data[ci, li], lay, opts)
                if out:
                    _write_unit(out, ci, li, arrays, template)
                    _mark_done(out, ci, li)
                else:
                    computed[(ci, li)] = arrays
                bar.advance()
    elapsed = time.perf_counter() - started
    read_bytes = len(units) * act.dtype.itemsize * lay.n_samples * len(lay.tokens) * lay.n_features
    attrs = {**provenance(where), **metric_attrs(opts.fit_range), "tgo_config": config,
             "all_tokens_method": _all_tokens_method(opts, lay.n_samples, len(lay.tokens) * lay.n_features)
             if opts.all_tokens_on else "off",
             "svd_rank": opts.svd_rank, "power_iters": opts.power_iters, "device": opts.device,
             "intrinsic_dimension": f"TwoNN, linear fit through the origin, discard fraction 0.1, on at most "
                                    f"{opts.id_samples} seeded samples (seed {opts.seed}) of un-centred vectors of all tokens concatenated",
             "token_correlation": "Pearson r between tokens' flattened (sample x feature) activations from float64 Gram sums",
             "rank_padding": "eigenvalue arrays share the `rank` dim; ranks beyond a spectrum's length are NaN",
             "input_attrs": json.dumps({k: v for k, v in ds.attrs.items()}, default=str)}
    result = _assemble(out, template, computed, attrs)
    if opts.wants(N.ALPHA_CLUSTER) and N.ALPHA in result:
        result = _add_clusters(result, out, opts)
    if progress:
        import sys

        print(f"analyzed {len(units)} (checkpoint, layer) units ({len(done)} reused) on {where}: "
              f"{read_bytes / 1e6:.1f} MB read in {elapsed:.1f} s ({read_bytes / max(elapsed, 1e-9) / 1e9:.2f} GB/s)",
              file=sys.stderr)
    return result


def _add_all_tokens(arrays: dict[str, np.ndarray], graph_result: dict, slab: Any, lay: Layout, opts: Options) -> None:
    trace = float(np.sum(arrays["_trace"])) if "_trace" in arrays else None
    n_flat = len(lay.tokens) * lay.n_features
    if "gram_eigs" in graph_result:
        eigs = graph_result["gram_eigs"][:min(lay.n_samples, n_flat)]
        _all_token_metrics(arrays, eigs, trace if trace is not None else float(eigs.sum()), True, lay, opts)
        return
    flat = slab.reshape(lay.n_samples, n_flat)
    eigs = randomized_eigenvalues(flat, opts.svd_rank, opts.power_iters, opts.seed)
    if trace is None:
        trace = float(((flat.astype(np.float64) - flat.astype(np.float64).mean(axis=0)) ** 2).sum().compute()) / (lay.n_samples - 1)
    _all_token_metrics(arrays, eigs, trace, False, lay, opts)


def _assemble(out: str | None, template: xr.Dataset, computed: dict, attrs: dict) -> xr.Dataset:
    if out:
        import zarr

        group = zarr.open_group(_store_of(out), mode="r+")
        group.attrs.update(json.loads(json.dumps(attrs, default=str)))
        zarr.consolidate_metadata(_store_of(out))
        return xr.open_zarr(out, zarr_format=3).load(scheduler=dask.threaded.get)
    # dask dedupes identical all-NaN arrays: un-share them
    result = template.compute(scheduler=dask.threaded.get).copy(deep=True)
    for (ci, li), arrays in computed.items():
        for name, value in arrays.items():
            if not name.startswith("_") and name in result:
                result[name].values[ci, li] = value
    result.attrs.update(attrs)
    return result


def _add_clusters(result: xr.Dataset, out: str | None, opts: Options) -> xr.Dataset:
    from tgo_analysis.clustering import cluster_alpha_trajectories

    alpha_last = result[N.ALPHA].isel(checkpoint=-1)
    clusters = cluster_alpha_trajectories(alpha_last, opts.n_clusters, use_umap=opts.use_umap, seed=opts.seed)
    clusters.attrs["description"] = ("k-means of each token's alpha across layers at the last checkpoint, "
                                     f"standardised per layer, k={opts.n_clusters}, umap={opts.use_umap}, "
                                     "ids ordered by mean alpha; -1 = trajectory with NaN")
    result = result.assign({N.ALPHA_CLUSTER: clusters})
    if out:
        result[[N.ALPHA_CLUSTER]].to_zarr(out, mode="a", zarr_format=3, consolidated=True)
    return result
