"""Two writers into one `--out`: the second is told in one line who holds it, the first ends clean.

Two analyses into one results store, and two exports into one folder, at the same time: the
second gets one `tgo: error:` line naming the first (pid, host), and the first's result equals
a clean run number for number (byte for byte for the export). A writer killed with SIGKILL
leaves its lock file, not its lock: the next writer goes ahead.
"""

from __future__ import annotations

import importlib
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from tests.support import ingested_store, run_cli
from tgo_analysis.analyze import analyze
from tgo_analysis.results.store import open_results
from tgo_store.loader import export as export_module
from tgo_store.store.open import open_store
from tgo_store.store.writer_lock import lock_path

analyze_module = importlib.import_module("tgo_analysis.analyze")  # the package's `analyze` is the function
METRICS = "alpha,mean_norm"
FIT = ["--fit-range", "2:6"]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    return ingested_store(tmp_path_factory.mktemp("lock"))


def held_in_a_thread(monkeypatch, module, name: str, run) -> tuple[threading.Thread, threading.Event, list]:
    """Run ``run()`` in a thread that pauses inside ``module.name`` (the writer is mid-way) until released."""
    real, inside, release, errors = getattr(module, name), threading.Event(), threading.Event(), []

    def paused(*args, **kwargs):
        inside.set()
        release.wait(60)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, paused)

    def target():
        try:
            run()
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    assert inside.wait(60), errors
    return thread, release, errors


def one_line_naming_this_process(done) -> str:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert f"(pid {os.getpid()} on {socket.gethostname()}, since" in lines[0]
    return lines[0]


def test_two_analyses_into_one_out_give_one_lock_message_and_a_clean_result(store, tmp_path, monkeypatch,
                                                                              capsys) -> None:
    out = str(tmp_path / "r.zarr")
    first, release, errors = held_in_a_thread(
        monkeypatch, analyze_module, "write_unit",
        lambda: analyze(open_store(store), METRICS, out=out, fit_range=(2, 6), progress=False))
    second = run_cli(["analyze", store, "--out", out, "--metrics", METRICS, *FIT, "--quiet"], capsys)
    line = one_line_naming_this_process(second)
    assert f"{out} is being written by an analysis (tgo analyze)" in line and "choose another --out" in line
    release.set()
    first.join(120)
    assert not errors and not os.path.exists(lock_path(out))
    monkeypatch.undo()
    result, clean = open_results(out).load(), analyze(open_store(store), METRICS, fit_range=(2, 6), progress=False)
    for name in clean.data_vars:
        np.testing.assert_array_equal(result[name].values, clean[name].values, err_msg=name)
    assert result.attrs["analysis_summary"]["units_computed"] == 6  # the refused run wrote nothing


def test_a_lock_left_by_a_killed_writer_does_not_block_the_next(store, tmp_path, capsys) -> None:
    out = str(tmp_path / "r.zarr")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom tgo_store.store.writer_lock import writer_lock\n"
         "with writer_lock(sys.argv[1], 'an analysis (tgo analyze)'):\n    print('held', flush=True)\n"
         "    time.sleep(120)\n", out],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
    try:
        assert holder.stdout.readline().strip() == "held"
        refused = run_cli(["analyze", store, "--out", out, "--metrics", METRICS, *FIT, "--quiet"], capsys)
        assert refused.returncode == 2 and f"(pid {holder.pid} on {socket.gethostname()}" in refused.stderr
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert os.path.exists(lock_path(out))  # the file of the dead holder is still there ...
    done = run_cli(["analyze", store, "--out", out, "--metrics", METRICS, *FIT, "--quiet"], capsys)
    assert done.returncode == 0, done.stderr  # ... and its lock is not
    assert not os.path.exists(lock_path(out))


def test_two_exports_into_one_out_give_one_lock_message_and_a_clean_export(store, tmp_path, monkeypatch,
                                                                           capsys) -> None:
    out, clean = tmp_path / "export", tmp_path / "clean"
    args = ["--layer", "1", "--checkpoints", "all", "--shard-size", "2000", "--quiet"]
    first, release, errors = held_in_a_thread(
        monkeypatch, export_module, "_write_shard",
        lambda: export_module.export("hf-datasets", store, 1, out, checkpoints=slice(None), shard_size=2000))
    second = run_cli(["export", store, "--out", str(out), *args], capsys)
    line = one_line_naming_this_process(second)
    assert f"{out} is being written by an export (tgo export)" in line
    release.set()
    first.join(120)
    assert not errors
    monkeypatch.undo()
    assert run_cli(["export", store, "--out", str(clean), *args], capsys).returncode == 0
    files = sorted(p.name for p in clean.iterdir())
    assert sorted(p.name for p in out.iterdir()) == files and len(files) > 4
    for name in files:
        assert (out / name).read_bytes() == (clean / name).read_bytes(), name
