"""The ingest loop: for each checkpoint, for each missing block: capture -> write -> commit.

``prepare_store`` fixes the store's metadata once (creating it or appending checkpoints) and
returns a picklable ``StorePlan``; ``ingest_block`` computes and writes one (checkpoint,
sample block) region on its own, so the same plan serves the serial loop here and parallel
workers in ``tgo sweep``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import tgo_store
from tgo_store import schema as S
from tgo_store.capturers import make_capturer
from tgo_store.checkpoints import (
    CheckpointRef,
    load_checkpoint_into,
    refuse_duplicates,
    resolve_checkpoints,
)
from tgo_store.errors import TgoError
from tgo_store.gradient_precision import (
    DEFAULT_GRADIENT_DTYPE,
    block_counts,
    check_gradient_dtype,
    record_zero_fraction,
    stored_gradient_dtype,
)
from tgo_store.gradients import (
    DEFAULT_MASK_RATE,
    MASKED_LM,
    LossSpec,
    capture_gradient_block,
    check_same_loss,
    loss_for_ingest,
)
from tgo_store.layout import StoreLayout, choose_layout
from tgo_store.metadata import (
    CREATING,
    StoreSpec,
    append_checkpoints,
    create_store,
    existing_checkpoints,
    finish,
    metadata_lock,
    recover,
)
from tgo_store.models import build_model, default_checkpoints, input_config, model_description
from tgo_store.records import RECORD_ROOT, RecordStore
from tgo_store.sources import DataSource, open_source
from tgo_store.temporaries import remove_block_temporaries, sweep_temporaries
from tgo_store.transfer import BlockFiller, BufferPool, NonFiniteActivations
from tgo_store.writer import (
    BackgroundWriter,
    block_shard_keys,
    discard_shards,
    failure_key,
    open_activations_for_writing,
    open_zarr_store,
    read_commits,
    store_records,
    sync_shards,
    write_commit,
)

DTYPES = ("float16", "float32")
PRECISIONS = ("float32", "float16", "bfloat16")
WRITE_QUEUE_DEPTH = 2  # blocks waiting for the writer; memory is bounded by depth + 2 blocks


@dataclass(frozen=True)
class StorePlan:
    """Everything needed to write any block of a store; small and picklable."""

    url: str
    model_spec: str
    model_kwargs: dict
    checkpoints: tuple[CheckpointRef, ...]
    checkpoint_indices: tuple[int, ...]  # slot of each checkpoint along the store's `checkpoint` dim
    data_spec: str
    n_samples: int
    layers: tuple[int, ...]
    tokens: tuple[int, ...] | None
    hook_modules: tuple[str, ...] | None
    dtype: str
    batch_size: int
    layout: StoreLayout
    storage_options: dict = field(default_factory=dict)
    precision: str = "float32"  # the model's compute dtype
    data_options: dict = field(default_factory=dict)  # SourceOptions fields: seq_len, padding, samples, seed
    loss: LossSpec | None = None  # with --gradients: the loss whose ∂L/∂h is recorded (SPEC section 5)
    gradient_dtype: str = DEFAULT_GRADIENT_DTYPE  # storage dtype of the gradients (--gradient-dtype)

    @property
    def n_blocks(self) -> int:
        return self.layout.n_blocks(self.n_samples)


@dataclass
class BlockStats:
    samples: int
    bytes: int
    seconds: float


@dataclass
class IngestSummary:
    url: str
    checkpoints: int
    blocks_written: int
    blocks_skipped: int
    samples: int
    bytes: int
    seconds: float

    @property
    def samples_per_second(self) -> float:
        return self.samples / self.seconds if self.seconds else float("nan")


PROBE_SAMPLES = 16  # samples of the one batch each new checkpoint runs before the store is touched


def resolve_device(device: str) -> str:
    """'auto' -> cuda when there is a GPU, else cpu; any other name is checked against torch."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise TgoError(f"unknown --device '{device}'; use auto, cpu, cuda or cuda:N") from exc
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise TgoError(f"--device {device} asks for a GPU but torch sees none; use --device cpu or auto")
        if parsed.index is not None and parsed.index >= count:
            raise TgoError(f"--device {device}: torch sees {count} GPU(s) (cuda:0..cuda:{count - 1}); pick one of them")
    elif parsed.type not in ("cpu", "mps", "xpu"):
        raise TgoError(f"unsupported --device '{device}'; use auto, cpu, cuda or cuda:N")
    return str(parsed)




def _open_parts(model_spec: str, model_kwargs: dict, data_spec: str,
                data_options: dict | None = None) -> tuple[Any, DataSource]:
    """The model, then the source opened with what it needs of the model (image format or tokenizer)."""
    model = build_model(model_spec, **model_kwargs)
    source = open_source(data_spec, **input_config(model), **(data_options or {}))
    return model, source


def _capturer(model: Any, source: DataSource, layers: Sequence[int] | None, tokens: Sequence[int] | None,
              hook_modules: Sequence[str] | None, device: Any = "cpu", dtype: Any = None) -> Any:
    example = next(source.batches(1)).inputs  # capturers that need one learn the token count from it
    return make_capturer(model, layers=layers, tokens=tokens, hook_modules=hook_modules, example=example)


def _check_same(group_attrs: dict, key: str, expected: Any, what: str, url: str) -> None:
    found = group_attrs.get(key)
    if found != expected:
        raise TgoError(f"store {url} holds another {what} ({_short(found)} vs {_short(expected)}); "
                       "ingest into a new store, or use the same options as the first run")


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) < 80 else text[:77] + "..."


def prepare_store(url: str, *, model_spec: str, checkpoints: str | Sequence[str] | Sequence[CheckpointRef],
                  data_spec: str, layers: Sequence[int] | None = None, tokens: Sequence[int] | None = None,
                  dtype: str = "float16", batch_size: int = 64, samples_per_block: int | None = None,
                  model_kwargs: dict | None = None, hook_modules: Sequence[str] | None = None,
                  storage_options: dict | None = None, precision: str = "float32",
                  data_options: dict | None = None, check_checkpoints: bool = True, gradients: bool = False,
                  loss: str | None = None, mask_rate: float = DEFAULT_MASK_RATE, mask_seed: int = 0,
                  gradient_dtype: str | None = None, allow_duplicate_weights: bool = False) -> StorePlan:
    """Create the store or append checkpoints to it; refuse anything that would mix data.

    Before the store is touched, each new checkpoint is loaded into the model and runs one
    batch (``check_checkpoints``; the live ``Recorder`` has no files and checks while capturing).

    ``precision`` is the dtype the model computes in (float32, or float16/bfloat16 for speed on
    a GPU); it changes the activations, so it is part of the store's model description.

    A checkpoint whose weights the store already holds under another path is refused unless
    ``allow_duplicate_weights``; a folder or Zarr group that tgo did not write is refused.
    """
    if dtype not in DTYPES:
        raise TgoError(f"unknown --dtype {dtype}; use float16 or float32")
    check_gradient_dtype(gradient_dtype)
    if precision not in PRECISIONS:
        raise TgoError(f"unknown --precision {precision}; use {', '.join(PRECISIONS)}")
    if batch_size < 1:
        raise TgoError(f"--batch-size must be at least 1, got {batch_size}")
    model_kwargs = dict(model_kwargs or {})
    refs = [c if isinstance(c, CheckpointRef) else None for c in checkpoints or []] if not isinstance(checkpoints, str) else []
    refs = list(checkpoints) if refs and all(refs) else (
        resolve_checkpoints(checkpoints, allow_duplicate_weights) if checkpoints else default_checkpoints(model_spec))
    if not refs:
        raise TgoError("no checkpoints given; pass --checkpoints with a glob or a list of files")
    records = store_records(url, storage_options)
    store = open_zarr_store(url, storage_options=storage_options)
    _refuse_foreign(store, records, url)
    if not allow_duplicate_weights:
        refuse_duplicates(refs, _existing(store))
    model, source = _open_parts(model_spec, model_kwargs, data_spec, data_options)
    capturer = _capturer(model, source, layers, tokens, hook_modules)
    loss_spec = loss_for_ingest(model, source, capturer, gradients, loss, mask_rate, mask_seed)
    description = model_description(model, model_spec, model_kwargs)
    if precision != "float32":  # stores from before this option computed in float32 and say nothing
        description["precision"] = precision
    dataset = {"name": data_spec, "fingerprint": source.fingerprint(), "n_samples": len(source)}
    itemsize = 2 if dtype == "float16" else 4
    layout = choose_layout(len(source), len(capturer.token_indices), capturer.feature_dim, itemsize,
                           batch_size, samples_per_block)
    known = {path for _, path, _ in _existing(store)}
    if check_checkpoints:
        _probe_checkpoints(model, source, capturer, [r for r in refs if r.url not in known], dtype, precision)
    with metadata_lock(url):
        try:
            if _open_group(store, url) is not None:  # an existing store: refuse a read-only one before any write
                _check_writable(records, url)
            recover(store, records)
            sweep_temporaries(records, set(read_commits(records)), metadata_locked=True)  # of killed writes
            group = _open_group(store, url)
            grad_dtype = check_gradient_dtype(gradient_dtype, stored_gradient_dtype(group))
            if group is None:
                spec = StoreSpec(
                    n_samples=len(source), layer_indices=list(capturer.layer_indices),
                    layer_names=list(capturer.layer_names), token_indices=np.asarray(capturer.token_indices),
                    token_kinds=capturer.token_layout.kinds, token_rows=capturer.token_layout.rows,
                    token_cols=capturer.token_layout.cols, n_features=capturer.feature_dim,
                    sample_ids=source.sample_ids, labels=source.labels, dtype=dtype,
                    chunk_shape=layout.chunk_shape(capturer.feature_dim),
                    shard_shape=layout.shard_shape(capturer.feature_dim),
                    attrs={S.ATTR_SCHEMA: S.SCHEMA_VERSION, S.ATTR_MODEL: description, S.ATTR_DATASET: dataset,
                           S.ATTR_CREATED_BY: f"tgo {tgo_store.__version__}",
                           "tgo_layout": {"samples_per_block": layout.samples_per_block,
                                          "tokens_per_chunk": layout.tokens_per_chunk},
                           "tgo_batch_size": batch_size, **source.store_attrs(),
                           **({S.ATTR_SCHEMA: S.TEXT_SCHEMA_VERSION, S.ATTR_LOSS: loss_spec.attr()} if loss_spec else {})},
                    positions=source.positions(), gradients=loss_spec is not None,
                    gradient_dtype=grad_dtype)
                group = create_store(store, spec, records)
                if loss_spec is not None and loss_spec.kind == MASKED_LM:
                    from tgo_store.hf import tokenizer_of
                    from tgo_store.masked_positions import write_masked_positions

                    write_masked_positions(group, source.positions(), source.sample_ids, loss_spec,
                                           tokenizer_of(model).mask_token_id, capturer.token_indices,
                                           spec.shard_shape[2])
            else:
                for key, value in source.store_attrs().items():  # text: tokenizer and text settings
                    _check_same(dict(group.attrs), key, value, f"'{key}' setting", url)
                layout = _check_compatible(group, url, description, dataset, capturer, dtype)
                check_same_loss(dict(group.attrs).get(S.ATTR_LOSS), loss_spec, url)
            indices = _place_checkpoints(group, records, url, refs)
            finish(store, records)
        except (PermissionError, OSError) as exc:
            raise TgoError(f"cannot write the store at {url} ({type(exc).__name__}: {exc}); "
                           "choose a writable location") from exc
    return StorePlan(url=url, model_spec=model_spec, model_kwargs=model_kwargs, checkpoints=tuple(refs),
                     checkpoint_indices=tuple(indices), data_spec=data_spec, n_samples=len(source),
                     layers=tuple(capturer.layer_indices),
                     tokens=None if tokens is None else tuple(int(t) for t in capturer.token_indices),
                     hook_modules=tuple(hook_modules) if hook_modules else None, dtype=dtype,
                     batch_size=batch_size, layout=layout, storage_options=dict(storage_options or {}),
                     precision=precision, data_options=dict(data_options or {}), loss=loss_spec,
                     gradient_dtype=grad_dtype)


def _refuse_foreign(store: Any, records: RecordStore, url: str) -> None:
    """Refuse, before anything is written (lock file and write probe included), a Zarr group
    that is not an activation store (written by plain xarray, or tgo's analysis results) or a
    folder of other files: tgo would mix its arrays into it, and the clean-up of a killed
    creation would delete what was there."""
    import zarr

    try:
        if records.get(CREATING) is not None:  # tgo's own half-made store: prepare starts it again
            return
        group = zarr.open_group(store, mode="r")
    except (FileNotFoundError, KeyError):
        group = None
    except (ValueError, TypeError, NotADirectoryError, PermissionError):  # refused later, with their own reasons
        return
    if group is not None:
        if S.ACTIVATIONS in group:
            return
        members = [f"{name} {tuple(node.shape)}" if hasattr(node, "shape") else f"{name}/"
                   for name, node in sorted(group.members())]
        held = f"arrays {', '.join(members[:4])}{' ...' if len(members) > 4 else ''}" if members else "no arrays"
        raise TgoError(f"{url} is a Zarr group but not a tgo activation store (it holds {held} and no "
                       f"'{S.ACTIVATIONS}'); it is left as it is: choose another --store URL, a new path for the tgo store")
    try:
        entries = [e.rstrip("/").rsplit("/", 1)[-1] for e in records.fs.ls(records.root, detail=False)]
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return
    others = sorted(e for e in entries if e != RECORD_ROOT)
    if others:
        raise TgoError(f"{url} is a folder holding other files ({', '.join(others[:3])}{' ...' if len(others) > 3 else ''}), "
                       "not a Zarr store; it is left as it is: choose another --store URL, a new path for the tgo store")


def _existing(store: Any) -> list[tuple[int, str, str]]:
    """The checkpoints a finished store already holds (none for a new or half-made one); read only."""
    import zarr

    try:
        group = zarr.open_group(store, mode="r")
        return existing_checkpoints(group) if S.ACTIVATIONS in group else []
    except (FileNotFoundError, KeyError, ValueError, TypeError, IndexError):
        return []


def _probe_checkpoints(model: Any, source: DataSource, capturer: Any, refs: Sequence[CheckpointRef], dtype: str,
                       precision: str) -> None:
    """Load each new checkpoint, match it to the model and run one batch, before the store is touched.

    A refused checkpoint (no tensors, another architecture, NaN/Inf or float16-overflowing
    activations) then leaves an existing store byte for byte as it was.
    """
    if not refs:
        return
    import torch

    n = min(PROBE_SAMPLES, len(source))
    inputs = capturer.prepare(next(source.batches(n, 0, n)).inputs, "cpu", getattr(torch, precision))
    model.to(getattr(torch, precision))
    filler = BlockFiller("cpu", dtype)
    for ref in refs:
        load_checkpoint_into(model, ref)
        data = capture_block(filler, capturer, [inputs], n, f"checkpoint {ref.url}", f"samples 0-{n - 1}")
        filler.pool.release(data)


def _check_writable(records: RecordStore, url: str) -> None:
    """Write and delete a probe record before touching anything: a read-only store stays as it is.

    Opening a local store with mode="r+" does not check permissions, so without the probe the
    first failing write would come after metadata changes had started.
    """
    try:
        records.probe_writable()
    except (PermissionError, OSError) as exc:
        raise TgoError(f"store {url} is read-only ({type(exc).__name__}: {exc}); ingest into a writable location") from exc


def _open_group(store: Any, url: str) -> Any:
    import zarr

    try:
        return zarr.open_group(store, mode="r+")
    except FileNotFoundError:
        return None
    except PermissionError as exc:
        raise TgoError(f"store {url} is read-only ({exc}); ingest into a writable location") from exc
    except (ValueError, TypeError) as exc:
        if "read" in str(exc).lower() and "only" in str(exc).lower():
            raise TgoError(f"store {url} is read-only; ingest into a writable location") from exc
        raise TgoError(f"{url} is not a tgo store ({exc}); choose a new store URL") from exc


def _check_compatible(group: Any, url: str, description: dict, dataset: dict, capturer: Any, dtype: str) -> StoreLayout:
    attrs = dict(group.attrs)
    if S.ACTIVATIONS not in group:
        raise TgoError(f"{url} is a Zarr group without '{S.ACTIVATIONS}'; choose a new store URL")
    S.check_schema_version(attrs, f"store {url}")
    _check_same(attrs, S.ATTR_MODEL, description, "model configuration", url)
    _check_same(attrs, S.ATTR_DATASET, dataset, "dataset", url)
    act = group[S.ACTIVATIONS]
    if str(act.dtype) != dtype:
        raise TgoError(f"store {url} holds {act.dtype} activations, this run asks for {dtype}; use --dtype {act.dtype}")
    layers = [int(x) for x in group[S.LAYER][:]]
    tokens = [int(x) for x in group[S.TOKEN][:]]
    if layers != list(capturer.layer_indices) or tokens != [int(t) for t in capturer.token_indices]:
        raise TgoError(f"store {url} holds layers/tokens other than this run's selection; "
                       "use the --layers/--tokens of the first run or a new store")
    info = attrs.get("tgo_layout", {})
    return StoreLayout(int(info.get("samples_per_block", act.shards[2])),
                       int(info.get("tokens_per_chunk", act.chunks[3])), act.shape[3])


def _place_checkpoints(group: Any, records: RecordStore, url: str, refs: Sequence[CheckpointRef]) -> list[int]:
    """The slot of each checkpoint: its existing slot, or a new one appended at the end."""
    existing = existing_checkpoints(group)
    by_path = {path: (i, sha) for i, (_, path, sha) in enumerate(existing)}
    indices, new = [], []
    for ref in refs:
        if ref.url in by_path:
            index, sha = by_path[ref.url]
            if sha != ref.sha256:
                raise TgoError(f"checkpoint {ref.url} changed since it was ingested (sha256 {sha[:12]} -> "
                               f"{ref.sha256[:12]}); restore the file or ingest into a new store")
            indices.append(index)
        else:
            indices.append(len(existing) + len(new))
            new.append(ref)
    if new:
        append_checkpoints(group, records, [r.step for r in new], [r.url for r in new], [r.sha256 for r in new])
    return indices


def missing_blocks(plan: StorePlan) -> list[tuple[int, int]]:
    """(position in plan.checkpoints, block) pairs that have no valid commit record."""
    commits = read_commits(store_records(plan.url, plan.storage_options))
    missing = []
    for position, (ref, index) in enumerate(zip(plan.checkpoints, plan.checkpoint_indices, strict=True)):
        for block in range(plan.n_blocks):
            record = commits.get((index, block))
            if record is None or record.get("sha256") != ref.sha256:
                missing.append((position, block))
    return missing


def capture_block(filler: BlockFiller, capturer: Any, batches: Iterable[Any], n_samples: int, source: str,
                  samples: str) -> np.ndarray:
    """Fill one block (layer, sample, token, feature) from input batches; TgoError on NaN/Inf."""
    shape = (len(capturer.layer_indices), n_samples, len(capturer.token_indices), capturer.feature_dim)
    filler.start(shape)
    offset = 0
    try:
        for inputs in batches:
            filler.add(capturer.parts(inputs), offset)
            offset += len(inputs)
        return filler.finish()
    except NonFiniteActivations as exc:
        names = [capturer.layer_names[i] for i in exc.layers]
        raise TgoError(
            f"{source} gives NaN/Inf activations (or values beyond {filler.dtype}) at {', '.join(names[:3])} "
            f"in {samples}; nothing of this block was stored: fix the model, drop the checkpoint, or use --dtype float32"
        ) from None
    finally:
        filler.abandon()


class _Runner:
    """A model loaded at one checkpoint, its capturer and the data source, reused across blocks."""

    def __init__(self, plan: StorePlan, position: int, device: str, pool: BufferPool | None = None):
        import torch

        self.model, self.source = _open_parts(plan.model_spec, plan.model_kwargs, plan.data_spec, plan.data_options)
        load_checkpoint_into(self.model, plan.checkpoints[position])
        self.device = torch.device(resolve_device(device))
        self.compute_dtype = getattr(torch, plan.precision)
        self.model.to(self.device, self.compute_dtype)
        layers = list(plan.layers) if not plan.hook_modules else None
        self.capturer = _capturer(self.model, self.source, layers, plan.tokens, plan.hook_modules,
                                  self.device, self.compute_dtype)
        self.filler = BlockFiller(self.device, plan.dtype, pool)
        self.grad_filler = BlockFiller(self.device, plan.gradient_dtype, self.filler.pool) if plan.loss else None
        self.plan, self.position = plan, position

    def capture_block(self, block: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Every layer and token of one sample block, in the storage dtype, and with gradients
        their ∂L/∂h from the same forward (else None).

        The returned arrays are pooled host buffers: give them back with ``release`` once stored.
        """
        plan = self.plan
        start, stop = plan.layout.block_range(block, plan.n_samples)
        batches = self.source.batches(plan.batch_size, start, stop)
        where = (f"checkpoint {plan.checkpoints[self.position].url}", f"samples {start}-{stop - 1}")
        try:
            if plan.loss is not None:
                pairs = ((self.capturer.prepare(b.inputs, self.device, self.compute_dtype), b) for b in batches)
                return capture_gradient_block((self.filler, self.grad_filler), self.capturer, pairs,
                                              stop - start, plan.loss, *where)
            inputs = (self.capturer.prepare(b.inputs, self.device, self.compute_dtype) for b in batches)
            return capture_block(self.filler, self.capturer, inputs, stop - start, *where), None
        except TgoError as exc:
            # Past the one-batch check the store is already extended: leave a record that
            # `tgo info` and `tgo analyze` explain, instead of a slot that reads as merely unfinished.
            store_records(plan.url, plan.storage_options).put(
                failure_key(plan.checkpoint_indices[self.position]), {"block": block, "step": plan.checkpoints[self.position].step,
                                             "reason": str(exc)})
            raise

    def release(self, *arrays: np.ndarray | None) -> None:
        for data in arrays:
            if data is not None:
                self.filler.pool.release(data)


def write_block(plan: StorePlan, position: int, block: int, data: np.ndarray, array: Any = None,
                gradients: np.ndarray | None = None, gradient_array: Any = None) -> None:
    """Write one block's shards (activations, and gradients when given), make them durable, then
    write its commit record.

    The order is the guarantee: a commit record exists only for a block whose every shard is
    on disk (fsync'd on local stores; a completed PUT on object stores).
    """
    records = store_records(plan.url, plan.storage_options)
    arrays = [(array if array is not None else open_activations_for_writing(plan.url, plan.storage_options), data)]
    if gradients is not None:
        arrays.append((gradient_array if gradient_array is not None else
                       open_activations_for_writing(plan.url, plan.storage_options, S.GRADIENTS), gradients))
    start, stop = plan.layout.block_range(block, plan.n_samples)
    index = plan.checkpoint_indices[position]
    keys = [key for target, _ in arrays for key in block_shard_keys(target, index, block)]
    remove_block_temporaries(records, keys)  # a killed write of this block left them
    discard_shards(records, keys)
    for target, values in arrays:
        target[index, :, start:stop] = values
    sync_shards(records, keys)
    ref = plan.checkpoints[position]
    write_commit(records, index, block, {"sha256": ref.sha256, "step": ref.step, "samples": [start, stop],
                                       "written_at": time.time(), **block_counts(gradients)})
    if (records.get(failure_key(index)) or {}).get("block") == block:  # a refused block, now written
        records.delete(failure_key(index))


def ingest_block(plan: StorePlan, position: int, block: int, *, device: str = "auto",
                 model_cache: dict | None = None) -> BlockStats:
    """Capture and write one (checkpoint, sample block) region; safe to repeat."""
    start_time = time.perf_counter()
    key = plan.checkpoints[position].sha256
    runner = model_cache.get(key) if model_cache is not None else None
    if runner is None:
        runner = _Runner(plan, position, device)
        if model_cache is not None:
            model_cache.clear()
            model_cache[key] = runner
    data, grads = runner.capture_block(block)
    try:
        write_block(plan, position, block, data, gradients=grads)
    finally:
        runner.release(data, grads)
    return BlockStats(samples=data.shape[1], bytes=data.nbytes + (0 if grads is None else grads.nbytes),
                      seconds=time.perf_counter() - start_time)


def ingest(url: str, *, model_spec: str, checkpoints: str | Sequence[str], data_spec: str,
           layers: Sequence[int] | None = None, tokens: Sequence[int] | None = None, dtype: str = "float16",
           batch_size: int = 64, samples_per_block: int | None = None, model_kwargs: dict | None = None,
           hook_modules: Sequence[str] | None = None, device: str = "auto", storage_options: dict | None = None,
           progress: bool = True, precision: str = "float32", data_options: dict | None = None,
           gradients: bool = False, loss: str | None = None, mask_rate: float = DEFAULT_MASK_RATE,
           mask_seed: int = 0, gradient_dtype: str | None = None,
           allow_duplicate_weights: bool = False) -> IngestSummary:
    """Ingest every missing (checkpoint, block): capture on the caller's thread, write in the background."""

    from tgo_store.progress import IngestProgress

    resolve_device(device)  # an unusable device is refused before the store is touched
    plan = prepare_store(url, model_spec=model_spec, checkpoints=checkpoints, data_spec=data_spec, layers=layers,
                         tokens=tokens, dtype=dtype, batch_size=batch_size, samples_per_block=samples_per_block,
                         model_kwargs=model_kwargs, hook_modules=hook_modules, storage_options=storage_options,
                         precision=precision, data_options=data_options, gradients=gradients, loss=loss,
                         mask_rate=mask_rate, mask_seed=mask_seed, gradient_dtype=gradient_dtype,
                         allow_duplicate_weights=allow_duplicate_weights)
    todo = missing_blocks(plan)
    array = open_activations_for_writing(url, storage_options)
    grad_array = open_activations_for_writing(url, storage_options, S.GRADIENTS) if plan.loss else None
    started = time.perf_counter()
    samples = 0
    with IngestProgress(plan, todo, enabled=progress) as bar:
        writer = BackgroundWriter(lambda p, b, d, g: write_block(plan, p, b, d, array, g, grad_array),
                                  depth=WRITE_QUEUE_DEPTH)
        pool = None
        try:
            runner = None
            for position, block in todo:
                if runner is None or runner.position != position:
                    pool = pool or BufferPool(resolve_device(device),
                                              size=(WRITE_QUEUE_DEPTH + 2) * (2 if plan.loss else 1))
                    runner = _Runner(plan, position, device, pool)
                data, grads = runner.capture_block(block)
                writer.put(position, block, data, grads, on_done=lambda d=data, p=position: bar.advance(p, d),
                           release=lambda d=data, g=grads, r=runner: r.release(d, g))
                samples += data.shape[1]
        finally:
            writer.close()
    if plan.loss is not None:
        record_zero_fraction(url, storage_options)
    return IngestSummary(url=url, checkpoints=len(plan.checkpoints), blocks_written=len(todo),
                         blocks_skipped=len(plan.checkpoints) * plan.n_blocks - len(todo), samples=samples,
                         bytes=writer.bytes_written, seconds=time.perf_counter() - started)
