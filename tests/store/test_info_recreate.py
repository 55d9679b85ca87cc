"""`tgo info` prints the `tgo ingest` line that re-creates a store (model spec with every kwarg), and
on a results store says what it holds instead of "no tgo store"."""

from __future__ import annotations

import shlex

import numpy as np
import xarray as xr

import tgo_analysis
from tests.analysis.conftest import planted_activations, write_plain_store
from tests.support import ingest_kwargs, run_cli, save_checkpoints
from tgo_store.store.recreate import format_selection


def test_selection_ranges_parse_back() -> None:
    from tgo_store.options import parse_selection

    for values in ([0, 1, 2, 5], [3], [0, 2, 4, 5, 6, 9]):
        assert list(parse_selection(format_selection(values))) == values


def test_info_line_re_creates_the_store(tmp_path, capsys) -> None:
    from tgo_store.ingestion import ingest

    ckpts = save_checkpoints(tmp_path / "ckpt", [0, 7])
    url = str(tmp_path / "a.zarr")
    ingest(url, **ingest_kwargs(ckpts, data_spec="synthetic:24", dtype="float32", tokens=[0, 1, 2, 5],
                                samples_per_block=12))
    shown = run_cli(["info", url], capsys)
    assert shown.returncode == 0, shown.stderr
    line = next(x for x in shown.stdout.splitlines() if x.startswith("tgo ingest "))
    args = shlex.split(line)
    assert args.count("--model-kwargs") == 7 and "embed_dim=16" in args  # every kwarg of the tiny ViT
    assert args[args.index("--store") + 1] == url
    again = str(tmp_path / "b.zarr")
    args[args.index("--store") + 1] = again
    made = run_cli([*args[1:], "--quiet", "--device", "cpu"], capsys)
    assert made.returncode == 0, made.stderr
    first, second = xr.open_zarr(url), xr.open_zarr(again)
    np.testing.assert_array_equal(first.activations.values, second.activations.values)  # the same recording
    assert first.attrs["model"] == second.attrs["model"] and first.attrs["dataset"] == second.attrs["dataset"]
    assert second.token.values.tolist() == [0, 1, 2, 5]


def test_info_on_a_results_store(tmp_path, capsys) -> None:
    store = write_plain_store(tmp_path / "s.zarr", planted_activations(n=40, t=3, d=16))
    out = str(tmp_path / "m.zarr")
    tgo_analysis.analyze(xr.open_zarr(store), "alpha,effective_rank", out=out, progress=False, fit_range=(2, 8))
    shown = run_cli(["info", out], capsys)
    assert shown.returncode == 0, shown.stderr
    assert "results of `tgo analyze`" in shown.stdout and "no tgo store" not in shown.stdout + shown.stderr
    assert "alpha, alpha_isotropic, alpha_r2" in shown.stdout and "effective_rank" in shown.stdout
    assert shown.stdout.rstrip().endswith("complete")  # every (checkpoint, layer) unit written
    assert "checkpoints 2 (steps 0 to 100), layers 3" in shown.stdout
