"""Long stages print progress lines (done/total, rate, ETA) when stderr is a file or a pipe, not
only rich's live display (which shows nothing there until it stops)."""

from __future__ import annotations

import re

import pytest

from tests.support import DATA, TINY_VIT, TINY_VIT_SPEC, cli_args, save_checkpoints
from tgo_store.progress import LineReport

LINE = r"{label}: (\d+)/(\d+) \((\d+)%\), ([\d.]+ {unit}/s|\d+ s per \w+).*elapsed .*, ETA "


def progress_lines(text: str, label: str, unit: str) -> list[tuple[int, int]]:
    pattern = re.compile(LINE.format(label=re.escape(label), unit=unit))
    return [(int(m.group(1)), int(m.group(2))) for m in pattern.finditer(text)]


def test_line_report_prints_each_tenth_and_the_end_not_every_update(capsys) -> None:
    report = LineReport("work", 1000, "units", interval=3600)
    for done in range(1, 1001):
        report.update(done)
    lines = progress_lines(capsys.readouterr().err, "work", "units")
    assert [d for d, _ in lines] == list(range(100, 1001, 100))  # every tenth; the last is 1000/1000


def test_line_report_prints_at_the_interval(capsys, monkeypatch) -> None:
    clock = iter(range(0, 10_000, 4))  # 4 s per update: a line every 3 updates at a 10 s interval
    monkeypatch.setattr("tgo_store.progress.time.perf_counter", lambda: next(clock))
    report = LineReport("slow", 10_000, "steps", interval=10)
    for done in range(1, 13):
        report.update(done)
    assert [d for d, _ in progress_lines(capsys.readouterr().err, "slow", "steps")] == [3, 6, 9, 12]


def test_ingest_analyze_and_training_print_progress_to_a_pipe(tmp_path, capsys) -> None:
    import torch

    from tgo_app.cli import main
    from tgo_app.training.vit import train
    from tgo_store.capture.models import build_model, input_config
    from tgo_store.sources import open_source

    save_checkpoints(tmp_path / "ckpt", [0, 10])
    store, results = str(tmp_path / "s.zarr"), str(tmp_path / "m.zarr")
    main([a for a in cli_args(str(tmp_path / "ckpt" / "*.pth"), store) if a != "--quiet"])
    err = capsys.readouterr().err
    lines = progress_lines(err, "ingest", "samples")
    assert lines and lines[-1][0] == lines[-1][1] == 2 * 359, err  # 2 checkpoints x 359 test digits
    assert "MB/s" in err

    main(["analyze", store, "--out", results, "--metrics", "effective_rank,token_correlation", "--fit-range", "2:6"])
    err = capsys.readouterr().err
    lines = progress_lines(err, "analyze", "units")
    assert lines and lines[-1] == (6, 6)  # 2 checkpoints x 3 layers
    assert "analyze: 6 units to do" in err and "analyzed 6 units" in err, err  # the bar and the summary agree
    assert "0.00 GB/s" not in err

    torch.manual_seed(0)
    model = build_model(TINY_VIT_SPEC, **TINY_VIT)
    inp = input_config(model)
    kwargs = {k: inp[k] for k in ("in_chans", "mean", "std")}
    source = open_source(DATA, image_size=inp["image_size"], **kwargs)
    train(model, source, source, [0, 5, 20], tmp_path / "train", batch_size=16)
    err = capsys.readouterr().err
    lines = progress_lines(err, "train", "steps")
    assert lines and lines[-1] == (20, 20) and len(lines) >= 3, err
    assert "step 20: held-out accuracy" in err


def test_slow_work_says_seconds_per_unit(monkeypatch) -> None:
    monkeypatch.setattr("tgo_store.progress.time.perf_counter", lambda: 0.0)
    report = LineReport("analyze", 30, "units", interval=10)
    report.done = 1
    assert "1/30 (3%), 420 s per unit" in report.line(now=420.0)  # not "0.00 units/s"
    report.done = 10
    assert "0.24 units/s" in report.line(now=42.0)


@pytest.mark.parametrize("seconds", ["", "x"])
def test_a_bad_interval_falls_back_to_the_default(monkeypatch, seconds) -> None:
    from tgo_store.progress import DEFAULT_INTERVAL, INTERVAL_ENV, line_interval

    monkeypatch.setenv(INTERVAL_ENV, seconds)
    assert line_interval() == DEFAULT_INTERVAL
