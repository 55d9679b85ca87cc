"""Semi-NMF: monotone objective, planted row-space recovery, refusals, numpy/torch agreement."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from scipy.linalg import subspace_angles

from tgo_analysis.kernels.seminmf import fit_codes, fit_seminmf
from tgo_store.errors import TgoError


def planted(n: int = 400, d: int = 24, r: int = 4, noise: float = 1e-3, seed: int = 1):
    rng = np.random.default_rng(seed)
    z = rng.exponential(size=(n, r))
    w = rng.standard_normal((r, d))
    return z @ w + noise * rng.standard_normal((n, d)), z, w


def test_objective_never_increases():
    a, _, _ = planted(noise=0.3)
    result = fit_seminmf(a, 4, iterations=300, tolerance=0.0, seed=3)
    steps = np.diff(result.objective)
    assert result.iterations == 300
    assert np.all(steps <= 1e-12 * result.objective[0]), steps.max()
    assert (result.codes >= 0).all()


def test_planted_mixture_is_recovered():
    a, _, w = planted()
    result = fit_seminmf(a, 4, iterations=2000, tolerance=1e-10, seed=0)
    angles = subspace_angles(result.dictionary.T, w.T)
    assert np.degrees(angles.max()) < 0.5, np.degrees(angles)
    assert result.objective[-1] < 1e-3 * result.objective[0]
    assert result.options["rank"] == 4 and result.options["seed"] == 0


def test_seed_makes_the_fit_reproducible():
    a, _, _ = planted(noise=0.1)
    one = fit_seminmf(a, 3, iterations=50, seed=5)
    two = fit_seminmf(a, 3, iterations=50, seed=5)
    np.testing.assert_array_equal(one.dictionary, two.dictionary)


@pytest.mark.parametrize("rank", [0, 24, 30])
def test_rank_out_of_range_is_a_value_error_the_statistic_words_with_its_flag(rank):
    a, _, _ = planted()
    with pytest.raises(ValueError, match="rank"):
        fit_seminmf(a, rank)
    from tgo_analysis.statistics.tangent_fit import TangentOptions

    with pytest.raises(TgoError, match="--tangent-rank") as info:
        TangentOptions(rank=rank).resolved(a.shape[1])
    assert "\n" not in str(info.value)


def test_numpy_path_does_not_import_torch(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # any `import torch` now fails
    a, _, _ = planted()
    assert fit_seminmf(a, 2, iterations=5).iterations <= 5


def test_torch_update_matches_numpy():
    torch = pytest.importorskip("torch")
    a, _, _ = planted(noise=0.2)
    z0 = np.abs(np.random.default_rng(0).standard_normal((a.shape[0], 4))) + 0.2
    _, w_np, h_np, _ = fit_codes(a, z0, np, 40, 0.0)
    _, w_t, h_t, _ = fit_codes(torch.as_tensor(a), torch.as_tensor(z0), torch, 40, 0.0)
    np.testing.assert_allclose(w_t.numpy(), w_np, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(h_t, h_np, rtol=1e-10)


def test_cuda_fit_matches_cpu():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    a, _, _ = planted(noise=0.2)
    cpu = fit_seminmf(a, 4, iterations=60, tolerance=0.0)
    from tgo_analysis import kernels_torch

    gpu = kernels_torch.fit_seminmf(a, 4, iterations=60, tolerance=0.0, device="cuda")
    np.testing.assert_allclose(gpu.dictionary, cpu.dictionary, rtol=1e-6, atol=1e-8)


def test_a_clean_problem_meets_the_default_convergence_criterion():
    """Relative to the objective itself a clean fit never converges (it keeps shrinking towards the
    noise floor by a fixed fraction); relative to the activations' centred energy it does, with the
    planted row space recovered and the stopping rule the recorded one."""
    a, _, w = planted()
    result = fit_seminmf(a, 4, iterations=5000, seed=0)
    assert result.converged and result.iterations < 5000
    assert np.degrees(subspace_angles(result.dictionary.T, w.T).max()) < 1.0
    last = result.objective[-2] - result.objective[-1]
    assert last <= 1e-6 * ((a - a.mean(axis=0)) ** 2).sum()
    before = result.objective[-3] - result.objective[-2]
    assert before > 1e-6 * ((a - a.mean(axis=0)) ** 2).sum()  # it stopped at the first iteration that met it


def test_a_warm_start_continues_from_the_given_codes():
    a, _, _ = planted()
    first = fit_seminmf(a, 4, iterations=5000, seed=0)
    again = fit_seminmf(a, 4, iterations=5000, seed=7, init=first.codes + 1e-9)
    assert again.iterations < 0.2 * first.iterations  # it starts at the optimum, not from a random start
    assert again.options["init"] == "warm start"
    with pytest.raises(ValueError, match="warm start"):
        fit_seminmf(a, 4, init=np.zeros((a.shape[0], 4)))


def test_a_weighted_fit_is_the_fit_of_the_repeated_rows_with_shared_codes():
    """Row weights t (a bootstrap replicate's draw counts) = A with row i repeated t_i times, the
    copies starting from (and so keeping) one code: the same objective path and dictionary."""
    a, _, _ = planted(n=120, noise=0.2)
    rng = np.random.default_rng(4)
    times = rng.integers(1, 4, size=a.shape[0])
    start = np.abs(rng.standard_normal((a.shape[0], 4))) + 0.2
    weighted = fit_seminmf(a, 4, iterations=40, tolerance=0.0, init=start, weights=times)
    repeated = fit_seminmf(np.repeat(a, times, axis=0), 4, iterations=40, tolerance=0.0,
                           init=np.repeat(start, times, axis=0))
    np.testing.assert_allclose(weighted.objective, repeated.objective, rtol=1e-10)
    np.testing.assert_allclose(weighted.dictionary, repeated.dictionary, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(np.repeat(weighted.codes, times, axis=0), repeated.codes, rtol=1e-8, atol=1e-12)
    with pytest.raises(ValueError, match="weights"):
        fit_seminmf(a, 4, init=start, weights=np.zeros(a.shape[0]))
