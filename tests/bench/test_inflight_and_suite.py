"""The in-flight co-moment mode against a float64 oracle, and the benchmark suite's plumbing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.inflight import InflightMoments
from tests.support import tiny_vit
from tgo_analysis.kernels.metrics import spectral_metrics
from tgo_analysis.kernels.moments import covariance
from tgo_analysis.kernels.spectra import covariance_eigenvalues
from tgo_store.capturers import make_capturer

ROOT = Path(__file__).resolve().parents[2]


def test_inflight_covariance_equals_np_cov_of_captured_activations() -> None:
    torch.manual_seed(0)
    model = tiny_vit().eval()
    batches = [torch.randn(n, 1, 16, 16) for n in (16, 5, 30)]
    acc = InflightMoments(model)
    for batch in batches:
        acc.update(batch)
    moments = acc.result()
    captured = torch.cat([make_capturer(model)(b) for b in batches], dim=1).double().numpy()  # (L, N, T, D)
    assert moments.count == 51 and moments.comoment.shape == (3, 17, 16, 16)
    for layer in range(3):
        for token in (0, 5, 16):
            ref = np.cov(captured[layer, :, token], rowvar=False)
            np.testing.assert_allclose(covariance(moments)[layer, token], ref, rtol=1e-6, atol=1e-9)
    eigs = covariance_eigenvalues(covariance(moments))
    ref_eigs = np.clip(np.sort(np.linalg.eigvalsh(np.cov(captured[2, :, 3], rowvar=False)))[::-1], 0, None)
    np.testing.assert_allclose(spectral_metrics(eigs, 16, (2, 5))["effective_rank"][2, 3],
                               spectral_metrics(ref_eigs, 16, (2, 5))["effective_rank"], rtol=1e-6)


@pytest.mark.slow
def test_suite_runs_and_writes_every_row(tmp_path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, "-m", "benchmarks", "--size", "tiny", "--only",
                           "machine,ingest,analysis,randomized", "--out", str(out)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(out.read_text())
    assert 0 < results["rows"]["ingest"]["ingest_fraction_of_forward"] < 2
    for row in ("machine", "ingest", "analysis", "randomized"):
        assert "error" not in results["rows"][row], results["rows"][row]
    for key in ("sgemm_gflops", "dgemm_gflops", "memcpy_gbs", "disk_write_fsync_gbs"):
        assert results["rows"]["machine"][key] > 0
    assert results["rows"]["randomized"]["randomized_q4_top100_max_rel_error"] < 1e-3
    assert "| analysis | tgo_seconds |" in done.stdout


def test_cuda_rows_fall_back_cleanly_without_cuda(tmp_path) -> None:
    if torch.cuda.is_available():
        return
    out = tmp_path / "cuda.json"
    done = subprocess.run([sys.executable, "-m", "benchmarks", "--size", "tiny", "--device", "cuda", "--only",
                           "ingest,analysis", "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    assert rows["ingest"]["skipped"] == rows["analysis"]["skipped"] == "no CUDA device on this machine"
