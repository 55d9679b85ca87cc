"""`tgo sweep` on a 2-process LocalCluster equals single-process ingest and analysis; a killed
worker loses nothing; bad sweep files are refused before anything is written."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from tests.support import DATA, TINY_VIT, TINY_VIT_SPEC, ingest_kwargs, save_checkpoints
from tgo_analysis.analyze import analyze
from tgo_app.sweep import ingest_task, load_config, run_sweep
from tgo_store import ingest, open_store
from tgo_store.errors import TgoError

FIT = [2, 6]


def sweep_file(tmp: Path, ckpt_glob: str, store: str, results: str) -> Path:
    kwargs = ", ".join(f"{k} = {v}" for k, v in TINY_VIT.items())
    text = f"""
[model]
spec = "{TINY_VIT_SPEC}"
kwargs = {{ {kwargs} }}
[checkpoints]
paths = "{ckpt_glob}"
[data]
spec = "{DATA}"
[store]
url = "{store}"
batch_size = 32
samples_per_block = 64
[analysis]
out = "{results}"
metrics = "alpha,effective_rank,token_correlation"
fit_range = {FIT}
[run]
retries = 3
"""
    path = tmp / "sweep.toml"
    path.write_text(text)
    return path


def store_files(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file() and "_tgo" not in p.parts}


@pytest.fixture(scope="module")
def cluster():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as lc, Client(lc) as client:
        yield client


@pytest.fixture(scope="module")
def single_process(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("single")
    ckpts = save_checkpoints(tmp / "ck", [0, 10, 100])
    ingest(str(tmp / "store.zarr"), **ingest_kwargs(ckpts))
    res = analyze(open_store(str(tmp / "store.zarr")), "alpha,effective_rank,token_correlation", fit_range=tuple(FIT),
                  progress=False)
    return tmp, res


@pytest.mark.slow
def test_sweep_equals_single_process(cluster, single_process, tmp_path) -> None:
    ref_dir, ref_res = single_process
    cfg = load_config(sweep_file(tmp_path, str(ref_dir / "ck" / "*.pth"), str(tmp_path / "s.zarr"), str(tmp_path / "r.zarr")))
    summary = run_sweep(cfg, cluster, progress=False)
    assert summary.blocks_written == 3 * 6
    assert store_files(tmp_path / "s.zarr") == store_files(ref_dir / "store.zarr")
    res = xr.open_zarr(tmp_path / "r.zarr")
    for name in ("alpha", "effective_rank", "token_correlation"):
        np.testing.assert_allclose(res[name].values, ref_res[name].values, rtol=1e-12, equal_nan=True)
    again = run_sweep(cfg, cluster, progress=False)
    assert again.blocks_written == 0 and again.blocks_skipped == 18


def killing_task(plan, position, block, marker: str):
    """Kills its own worker process the first time it runs (a marker file says it did)."""
    marker = Path(marker)
    if not marker.exists():
        marker.write_text("killed")
        os._exit(1)
    return ingest_task(plan, position, block)


def test_a_killed_worker_loses_and_doubles_nothing(cluster, single_process, tmp_path) -> None:
    ref_dir, _ = single_process
    marker = tmp_path / "killed"
    cfg = load_config(sweep_file(tmp_path, str(ref_dir / "ck" / "*.pth"), str(tmp_path / "s.zarr"), str(tmp_path / "r.zarr")))
    summary = run_sweep(cfg, cluster, task=functools.partial(killing_task, marker=str(marker)), progress=False)
    assert marker.exists()
    assert summary.blocks_written == 18
    assert store_files(tmp_path / "s.zarr") == store_files(ref_dir / "store.zarr")
    cluster.wait_for_workers(2, timeout=60)


def test_growing_checkpoints_append_to_the_results(cluster, single_process, tmp_path) -> None:
    ref_dir, ref_res = single_process
    ck = tmp_path / "ck"
    ck.mkdir()
    for name in ("step_0.pth", "step_10.pth"):
        (ck / name).write_bytes((ref_dir / "ck" / name).read_bytes())
    cfg = load_config(sweep_file(tmp_path, str(ck / "*.pth"), str(tmp_path / "s.zarr"), str(tmp_path / "r.zarr")))
    run_sweep(cfg, cluster, progress=False)
    (ck / "step_100.pth").write_bytes((ref_dir / "ck" / "step_100.pth").read_bytes())
    run_sweep(cfg, cluster, progress=False)
    res = xr.open_zarr(tmp_path / "r.zarr")
    assert list(res.checkpoint.values) == [0, 10, 100]
    np.testing.assert_allclose(res.alpha.values, ref_res.alpha.values, rtol=1e-12, equal_nan=True)


@pytest.mark.parametrize(("text", "message"), [
    ("[model]\nspec = 'x'\n", "no \\[checkpoints\\] table"),
    ("[model]\n[checkpoints]\npaths='a'\n[data]\nspec='d'\n[store]\nurl='s'\n", "lacks model.spec"),
    ("[model]\nspec = 3\n[checkpoints]\npaths='a'\n[data]\nspec='d'\n[store]\nurl='s'\n", "model.spec must be str"),
    ("[model\n", "not valid TOML"),
])
def test_bad_sweep_files_name_the_key(tmp_path, text, message) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(TgoError, match=message):
        load_config(path)


@pytest.mark.slow
def test_cli_watch_picks_up_new_checkpoints_until_the_stop_file(single_process, tmp_path) -> None:
    import subprocess
    import sys
    import time

    ref_dir, _ = single_process
    ck = tmp_path / "ck"
    ck.mkdir()
    (ck / "step_0.pth").write_bytes((ref_dir / "ck" / "step_0.pth").read_bytes())
    path = sweep_file(tmp_path, str(ck / "*.pth"), str(tmp_path / "s.zarr"), str(tmp_path / "r.zarr"))
    path.write_text(path.read_text() + f'stop_file = "{tmp_path / "STOP"}"\n')
    proc = subprocess.Popen([sys.executable, "-m", "tgo_app.cli", "sweep", str(path), "--watch", "--poll", "1",
                             "--workers", "1", "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300  # hang guards, not timings: a loaded 2-core CI machine is slow
    while time.time() < deadline and not (tmp_path / "s.zarr" / "_tgo" / "blocks").exists():
        time.sleep(0.5)
    (ck / "step_10.pth").write_bytes((ref_dir / "ck" / "step_10.pth").read_bytes())
    from tgo_store.store.info import store_info

    both = 2 * store_info(str(tmp_path / "s.zarr")).blocks_per_checkpoint  # every block of both checkpoints
    while time.time() < deadline and len(list((tmp_path / "s.zarr" / "_tgo" / "blocks").rglob("*.json"))) < both:
        time.sleep(0.5)
    (tmp_path / "STOP").write_text("")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    assert list(open_store(str(tmp_path / "s.zarr")).checkpoint.values) == [0, 10]
    status = subprocess.run([sys.executable, "-m", "tgo_app.cli", "sweep", str(path), "--status"],
                            capture_output=True, text=True)
    assert status.returncode == 0 and status.stdout.count("done") == 2
    bad = subprocess.run([sys.executable, "-m", "tgo_app.cli", "sweep", str(path), "--scheduler",
                          "tcp://127.0.0.1:1"], capture_output=True, text=True)
    assert bad.returncode == 2 and "cannot reach the Dask scheduler" in bad.stderr


def test_tasks_waiting_for_a_resource_are_reported(cluster, single_process, tmp_path) -> None:
    from tgo_app.sweep import missing_resources, sweep_status, write_status

    ref_dir, _ = single_process
    path = sweep_file(tmp_path, str(ref_dir / "ck" / "step_0.pth"), str(tmp_path / "s.zarr"), str(tmp_path / "r.zarr"))
    path.write_text(path.read_text() + "[resources]\ncapture = { GPU = 1 }\n")
    cfg = load_config(path)
    assert missing_resources(cluster, cfg) == {"GPU": 1}
    from tgo_app.sweep.run import prepare_sweep_store

    prepare_sweep_store(cfg)
    write_status(cfg.store, {"running": True, "waiting_for": missing_resources(cluster, cfg), "failures": []})
    rows, _ = sweep_status(cfg)
    assert rows[0][2] == "waiting for a worker with {'GPU': 1}"


def test_watch_stops_when_a_stop_file_appears_at_a_memory_url(monkeypatch, tmp_path) -> None:
    """The --watch loop lives in the library and checks the stop file through fsspec."""
    import fsspec

    from tgo_app.sweep import SweepSummary, run_sweeps, stop_requested
    from tgo_app.sweep import run as sweep_module

    stop = "memory://tgo-watch-test/STOP"
    fs = fsspec.filesystem("memory")
    if fs.exists(stop):
        fs.rm(stop)
    path = sweep_file(tmp_path, "ck/*.pth", str(tmp_path / "s.zarr"), str(tmp_path / "r.zarr"))
    path.write_text(path.read_text() + f'stop_file = "{stop}"\n')
    cfg = load_config(path)
    assert cfg.stop_file == stop and not stop_requested(cfg.stop_file)
    calls, sleeps = [], []

    def one_sweep(cfg, client, *, task, progress):
        calls.append(client)
        if len(calls) == 3:
            fs.pipe(stop, b"")
        return SweepSummary(0, 0, 0.0)

    monkeypatch.setattr(sweep_module, "run_sweep", one_sweep)
    summaries = run_sweeps(cfg, "client", watch=True, poll=7.0, sleep=sleeps.append)
    assert len(summaries) == 3 and calls == ["client"] * 3 and sleeps == [7.0, 7.0]
    assert len(run_sweeps(cfg, "client", watch=False)) == 1
    fs.rm(stop)


SIMILARITY = "cka_layers,cka_checkpoints,update_norm,update_pca_energy"


def similarity_sweep_file(tmp: Path, ckpt_glob: str, reference: int) -> Path:
    path = sweep_file(tmp, ckpt_glob, str(tmp / "s.zarr"), str(tmp / "r.zarr"))
    text = path.read_text().replace('metrics = "alpha,effective_rank,token_correlation"',
                                    f'metrics = "{SIMILARITY}"\ncka_reference = {reference}\n'
                                    'representations = "mean,cls"')
    path.write_text(text)
    return path


def test_similarity_grows_along_checkpoint_against_an_early_reference(cluster, single_process, tmp_path) -> None:
    """SPEC 6 in a sweep: items run on the cluster once both slabs are ingested; growth keeps what is done."""
    ref_dir, _ = single_process
    ck = tmp_path / "ck"
    ck.mkdir()
    for name in ("step_0.pth", "step_10.pth"):
        (ck / name).write_bytes((ref_dir / "ck" / name).read_bytes())
    cfg = load_config(similarity_sweep_file(tmp_path, str(ck / "*.pth"), reference=0))
    run_sweep(cfg, cluster, progress=False)
    first = xr.open_zarr(tmp_path / "r.zarr")
    # the CLS token of layer 0 is the same vector for every input: no variance, NaN CKA there (by definition)
    assert np.isfinite(first.cka_checkpoints.sel(representation="mean").values).all()
    assert np.isfinite(first.update_norm.values[0]).all()
    (ck / "step_100.pth").write_bytes((ref_dir / "ck" / "step_100.pth").read_bytes())
    run_sweep(cfg, cluster, progress=False)
    res = xr.open_zarr(tmp_path / "r.zarr")
    expected = analyze(open_store(str(ref_dir / "store.zarr")), SIMILARITY, progress=False, cka_reference=0,
                       representations="mean,cls")
    assert list(res.checkpoint.values) == [0, 10, 100] and res.attrs["cka_reference"] == 0
    for name in SIMILARITY.split(","):
        np.testing.assert_allclose(res[name].values, expected[name].values, rtol=1e-12, equal_nan=True)


def test_a_sweep_refuses_a_reference_that_is_not_one_of_its_checkpoints(cluster, single_process, tmp_path) -> None:
    ref_dir, _ = single_process
    cfg = load_config(similarity_sweep_file(tmp_path, str(ref_dir / "ck" / "*.pth"), reference=7))
    with pytest.raises(TgoError, match=r"analysis\.cka_reference 7 is not a checkpoint of this sweep"):
        run_sweep(cfg, cluster, progress=False)
    assert not (tmp_path / "r.zarr").exists()
