"""cka_layers and cka_checkpoints against the float64 formula on data in memory (SPEC section 6)."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import tgo_analysis
from tgo_store.errors import TgoError

TOL = 1e-9


def reference_cka(x: np.ndarray, y: np.ndarray) -> float:
    """‖XᵀY‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F), X and Y centred over samples, float64 (written out here, not imported)."""
    x = x.astype(np.float64) - x.astype(np.float64).mean(axis=0)
    y = y.astype(np.float64) - y.astype(np.float64).mean(axis=0)
    return float(np.sum((x.T @ y) ** 2) / (np.sqrt(np.sum((x.T @ x) ** 2)) * np.sqrt(np.sum((y.T @ y) ** 2))))


def gram_cka(x: np.ndarray, y: np.ndarray) -> float:
    """⟨HKH, HLH⟩ / (‖HKH‖ ‖HLH‖) with K = XXᵀ: the Gram form, float64."""
    n = x.shape[0]
    h = np.eye(n) - 1.0 / n
    kx = h @ (x.astype(np.float64) @ x.astype(np.float64).T) @ h
    ky = h @ (y.astype(np.float64) @ y.astype(np.float64).T) @ h
    return float(np.sum(kx * ky) / (np.linalg.norm(kx) * np.linalg.norm(ky)))


def dataset(x: np.ndarray, mask: np.ndarray | None = None, chunk: int = 37, cls: bool = False) -> xr.Dataset:
    c, _, _, t, _ = x.shape
    coords: dict = {"checkpoint": np.arange(c) * 10}
    if mask is not None:
        coords["attention_mask"] = (("sample", "token"), mask)
    if cls:
        coords["token_kind"] = ("token", np.array(["cls"] + ["patch"] * (t - 1)))
    ds = xr.Dataset({"activations": (("checkpoint", "layer", "sample", "token", "feature"), x)}, coords=coords)
    return ds.chunk({"sample": chunk})


def related_layers(n: int = 150, t: int = 4, d: int = 6, seed: int = 0, checkpoints: int = 1) -> np.ndarray:
    """Layer 1 = an orthogonal map of layer 0 times 3; layer 2 shares half its signal; layer 3 independent."""
    rng = np.random.default_rng(seed)
    out = np.empty((checkpoints, 4, n, t, d), np.float32)
    for c in range(checkpoints):
        base = rng.standard_normal((n, t, d)) * np.linspace(1, 2, d)
        q, _ = np.linalg.qr(rng.standard_normal((d, d)))
        out[c, 0] = base
        out[c, 1] = 3.0 * base @ q
        out[c, 2] = 0.5 * base @ rng.standard_normal((d, d)) + rng.standard_normal((n, t, d))
        out[c, 3] = rng.standard_normal((n, t, d))
    return out


def vectors(x: np.ndarray, rep: str, mask: np.ndarray | None) -> np.ndarray:
    """The representation in memory: x (N, T, D) of one slab."""
    valid = np.ones(x.shape[:2], bool) if mask is None else mask
    if rep == "mean":
        keep = valid.any(axis=1)
        return np.array([x[i, valid[i]].astype(np.float64).mean(axis=0) for i in np.flatnonzero(keep)])
    if rep == "all":  # SPEC 8: the positions valid in every sample, never padding as zeros
        return x[:, valid.all(axis=0)].reshape(x.shape[0], -1).astype(np.float64)
    k = 0 if rep == "cls" else int(rep.split(":")[1])
    return x[valid[:, k], k].astype(np.float64)


def test_orthogonal_maps_and_isotropic_scaling_give_one_and_every_pair_matches_the_formula() -> None:
    x = related_layers()
    reps = ("mean", "cls", "token:2", "all")
    res = tgo_analysis.analyze(dataset(x, cls=True), "cka_layers", progress=False, representations=",".join(reps))
    cka = res.cka_layers.isel(checkpoint=0)
    assert list(res.representation.values) == list(reps)
    for r, rep in enumerate(reps):
        np.testing.assert_allclose(cka.values[0, 1, r], 1.0, atol=1e-6)  # float32 storage of 3·XQ
        for a in range(4):
            for b in range(4):
                expected = reference_cka(vectors(x[0, a], rep, None), vectors(x[0, b], rep, None))
                assert abs(cka.values[a, b, r] - expected) < TOL, (rep, a, b)
    assert cka.values[0, 2, 0] > 0.1 and cka.values[0, 3, 0] < 0.1  # related vs independent


def test_all_equals_the_gram_form_and_masks_are_respected() -> None:
    rng = np.random.default_rng(3)
    x = related_layers(n=120, t=5, d=4, seed=3)
    mask = rng.random((120, 5)) > 0.3
    mask[:7] = False  # samples with no valid token: left out of mean
    x[0, :, ~mask] = 1e3  # padding with huge values: any leak shows
    res = tgo_analysis.analyze(dataset(x, mask), "cka_layers", progress=False,
                               representations="mean,token:1,all")
    cka = res.cka_layers.isel(checkpoint=0).values
    for a, b in ((0, 2), (2, 3), (0, 3)):
        for r, rep in enumerate(("mean", "token:1")):
            assert abs(cka[a, b, r] - reference_cka(vectors(x[0, a], rep, mask), vectors(x[0, b], rep, mask))) < TOL
    assert list(res.representation.values) == ["mean", "token:1"]  # no position is valid in every sample
    assert "valid (attention_mask true) in every sample" in res.attrs["cka_all_absent"]
    mask[:, [1, 3]] = True  # two positions valid everywhere: `all` concatenates exactly those
    x = related_layers(n=120, t=5, d=4, seed=3)
    x[0, :, ~mask] = 1e3
    res = tgo_analysis.analyze(dataset(x, mask), "cka_layers", progress=False, representations="all")
    assert res.attrs["cka_all_tokens"] == [1, 3]
    cka = res.cka_layers.isel(checkpoint=0).values
    for a, b in ((0, 2), (2, 3), (0, 3)):
        xa, xb = vectors(x[0, a], "all", mask), vectors(x[0, b], "all", mask)
        assert xa.shape == (120, 8)
        assert abs(cka[a, b, 0] - gram_cka(xa, xb)) < TOL
        assert abs(gram_cka(xa, xb) - reference_cka(xa, xb)) < TOL  # the two forms agree


def test_independent_layers_near_zero_as_n_grows() -> None:
    values = []
    for n in (100, 1600):
        x = np.random.default_rng(n).standard_normal((1, 2, n, 2, 8)).astype(np.float32)
        res = tgo_analysis.analyze(dataset(x, chunk=200), "cka_layers", progress=False, representations="mean")
        values.append(float(res.cka_layers.values[0, 0, 1, 0]))
    assert values[1] < 0.02 and values[1] < values[0] / 4, values


def test_cka_checkpoints_against_the_reference_by_step_and_a_missing_reference_refused() -> None:
    x = related_layers(checkpoints=3, seed=5)
    x[2] = x[0] * 2.0  # checkpoint 20 is a rescaled copy of checkpoint 0
    ds = dataset(x)
    res = tgo_analysis.analyze(ds, "cka_checkpoints", progress=False, representations="mean,token:0,all",
                               cka_reference=20)
    assert res.attrs["cka_reference"] == 20
    for c in range(3):
        for layer in range(4):
            for r, rep in enumerate(("mean", "token:0", "all")):
                expected = reference_cka(vectors(x[c, layer], rep, None), vectors(x[2, layer], rep, None))
                assert abs(res.cka_checkpoints.values[c, layer, r] - expected) < TOL
    np.testing.assert_allclose(res.cka_checkpoints.values[0], 1.0, atol=1e-6)
    default = tgo_analysis.analyze(ds, "cka_checkpoints", progress=False, representations="mean")
    assert default.attrs["cka_reference"] == 20  # the last checkpoint
    with pytest.raises(TgoError, match="--cka-reference 15 is not a training step of this store; the nearest is step"):
        tgo_analysis.analyze(ds, "cka_checkpoints", progress=False, cka_reference=15)


def test_layer_pair_groups_under_a_small_budget_give_the_same_numbers() -> None:
    x = np.random.default_rng(1).standard_normal((1, 6, 200, 3, 64)).astype(np.float32)
    x[0, 1:] += 0.7 * x[0, :-1]
    whole = tgo_analysis.analyze(dataset(x, chunk=50), "cka_layers", progress=False, representations="mean,token:0")
    # 6 layers x 64 features: 2.4 MB of co-moments per representation; 2.6 MB leaves room for pairs of 2-layer blocks (3 passes)
    grouped = tgo_analysis.analyze(dataset(x, chunk=50), "cka_layers", progress=False, representations="mean,token:0",
                                   memory_budget="2.6MB")
    assert grouped.attrs["token_passes"] == 3 and whole.attrs["token_passes"] == 1
    np.testing.assert_allclose(grouped.cka_layers.values, whole.cka_layers.values, rtol=0, atol=1e-12)


def test_all_is_absent_with_the_reason_when_the_grams_do_not_fit() -> None:
    x = np.random.default_rng(2).standard_normal((1, 3, 600, 2, 4)).astype(np.float32)
    res = tgo_analysis.analyze(dataset(x, chunk=100), "cka_layers", progress=False, representations="mean,all",
                               memory_budget="12MB")
    assert list(res.representation.values) == ["mean"]
    assert "Gram" in res.attrs["cka_all_absent"] and "--memory-budget" in res.attrs["cka_all_absent"]


def test_bad_representations_refused_in_one_line() -> None:
    ds = dataset(related_layers())
    for given, said in (("mean,pca", "unknown representation 'pca'"), ("cls", "CLS token"),
                        ("token:9", "beyond the store's 4 tokens")):
        with pytest.raises(TgoError, match=said) as info:
            tgo_analysis.analyze(ds, "cka_layers", progress=False, representations=given)
        assert "\n" not in str(info.value)


def test_all_includes_similarity_only_where_the_store_supports_it() -> None:
    from tgo_analysis.results.selection import parse_metrics

    one = dataset(related_layers())
    chosen = parse_metrics("all", one)
    assert "cka_layers" in chosen and "cka_checkpoints" not in chosen and "similarity" not in chosen
    assert "updates" not in chosen
    three = dataset(related_layers(checkpoints=3))
    assert {"similarity", "cka_checkpoints", "updates"} <= set(parse_metrics("all", three))
