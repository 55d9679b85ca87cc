"""A block refused after the store was extended (past the one-batch check) is explained, not hidden.

`tgo info` names the refused checkpoint and a command that works; `tgo analyze` refuses the
incomplete store (unwritten blocks read as zeros) unless `--complete-only`; a later successful
run of the same ingest writes the block and clears the record.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import tgo_store.capture.runner as ingest_module
from tests.support import ingest_kwargs, run_cli, save_checkpoints
from tgo_store import ingest
from tgo_store.errors import TgoError
from tgo_store.store.info import store_info


def run_cli_tuple(argv: list[str], capsys) -> tuple[int, str, str]:
    done = run_cli(argv, capsys)
    return done.returncode, done.stdout, done.stderr


def test_a_block_refused_later_is_explained_and_repaired(tmp_path, monkeypatch, capsys) -> None:
    ckpts = save_checkpoints(tmp_path / "ckpt", [0, 10])
    store = str(tmp_path / "store.zarr")
    ingest(store, **ingest_kwargs([ckpts[0]]))
    real = ingest_module.capture_block

    def refuse_second_block(filler, capturer, batches, n, source, samples):
        if "step_10" in source and not samples.startswith("samples 0-"):
            raise TgoError(f"{source} gives NaN/Inf activations at blocks.1 in {samples}; planted")
        return real(filler, capturer, batches, n, source, samples)

    monkeypatch.setattr(ingest_module, "capture_block", refuse_second_block)
    with pytest.raises(TgoError, match="planted"):
        ingest(store, **ingest_kwargs(ckpts))
    facts = store_info(store)
    assert facts.checkpoints[1]["failed"] and "planted" in facts.checkpoints[1]["failed"]
    assert facts.complete_checkpoints() == [0]

    code, out, _ = run_cli_tuple(["info", store], capsys)
    assert code == 0 and "cannot be finished by a re-run" in out and "--complete-only" in out

    results = str(tmp_path / "metrics.zarr")
    code, _, err = run_cli_tuple(["analyze", store, "--out", results, "--metrics", "mean_norm", "--quiet"], capsys)
    assert code != 0 and len(err.strip().splitlines()) == 1 and "--complete-only" in err

    code, _, err = run_cli_tuple(["analyze", store, "--out", results, "--metrics", "mean_norm", "--quiet",
                            "--complete-only"], capsys)
    assert code == 0, err
    assert xr.open_zarr(results)["checkpoint"].values.tolist() == [0]

    monkeypatch.setattr(ingest_module, "capture_block", real)  # the cause is gone: the same command repairs
    ingest(store, **ingest_kwargs(ckpts))
    facts = store_info(store)
    assert facts.complete and not any(c["failed"] for c in facts.checkpoints)
    full = str(tmp_path / "full.zarr")
    code, _, err = run_cli_tuple(["analyze", store, "--out", full, "--metrics", "mean_norm", "--quiet"], capsys)
    assert code == 0, err
    assert np.isfinite(xr.open_zarr(full)["mean_norm"].values).all()
