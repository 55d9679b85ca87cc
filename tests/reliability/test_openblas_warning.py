"""Training, then ingest and analysis in the same process, prints no OpenBLAS OpenMP-loop warning.

The full demo once printed "OpenBLAS Warning : Detect OpenMP Loop and this application may
hang" during analysis after training. This runs the same sequence in a fresh process with the
threading environment a user has (no OMP/OPENBLAS_NUM_THREADS=1 from the test conftest), on a
tiny ViT, and checks stderr.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import sys, torch
    from tests.support import TINY_VIT, TINY_VIT_SPEC, save_checkpoints, tiny_vit
    import tgo_analysis, tgo_store
    model = tiny_vit()
    opt = torch.optim.AdamW(model.parameters())
    for _ in range(3):
        loss = model(torch.randn(64, 1, 16, 16)).logsumexp(1).mean()
        opt.zero_grad(); loss.backward(); opt.step()
    folder = sys.argv[1]
    ckpts = save_checkpoints(folder + "/ck", [0, 1])
    tgo_store.ingest(folder + "/s.zarr", model_spec=TINY_VIT_SPEC, model_kwargs=dict(TINY_VIT), checkpoints=ckpts,
                     data_spec="sklearn:digits:test", batch_size=64, device="cpu", progress=False)
    tgo_analysis.analyze(tgo_store.open_store(folder + "/s.zarr"), "all", out=folder + "/m.zarr", fit_range=(2, 8),
                         n_clusters=2, progress=False)
""")


@pytest.mark.slow
def test_no_openblas_openmp_loop_warning(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True, env=env,
                          cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "OpenBLAS Warning" not in done.stderr, done.stderr[-2000:]
