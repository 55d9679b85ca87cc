"""The command line reads as one tool (issue 32): whole command summaries, one help panel per
statistic, switches without odd negations, one suggestion for a misspelled name, and the Python
packages list their lazy names."""

from __future__ import annotations

import re

import pytest

from tests.support import run_cli
from tgo_analysis.statistics import declared_options, statistics
from tgo_app.cli.analyze import option_panels


@pytest.fixture(autouse=True)
def _wide(monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "160")  # rich wraps at the terminal width; the checks read whole lines


def help_of(capsys, *verb: str) -> str:
    done = run_cli([*verb, "--help"], capsys)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_tgo_help_shows_every_command_summary_whole(capsys) -> None:
    from tgo_app.cli import VERB_MODULES, app

    text = help_of(capsys)
    assert not [ln for ln in text.splitlines() if "..." in ln and "Usage:" not in ln]  # no summary cut short
    for command in app.registered_commands:
        summary = " ".join((command.callback.__doc__ or "").split("\n\n")[0].split())
        assert summary and summary in " ".join(text.replace("│", " ").split()), summary
    assert len(app.registered_commands) == len(VERB_MODULES)


def test_analyze_help_has_a_panel_per_statistic_and_every_flag_in_one(capsys) -> None:
    text = help_of(capsys, "analyze")
    panels = set(re.findall(r"╭─ (.+?) ─", text))
    assert set(option_panels().values()) <= panels
    owners = {name for panel in option_panels().values() for name in re.findall(r"\w+", panel.split(":")[-1])}
    assert {s.name for s in statistics() if s.options} <= owners | {"Shared", "by"}
    for option in declared_options().values():
        assert text.count(option.flag + " ") >= 1, option.flag


def test_switches_read_well_and_placeholders_are_one_style(capsys) -> None:
    for verb in (("analyze",), ("ingest",), ("report",), ("demo",), ("export",), ("sweep",)):
        text = help_of(capsys, *verb)
        assert not re.search(r"--no-(list-metrics|without-final-norm|quiet|overwrite|umap|allow-duplicate|"
                             r"gradients|exclude|text|quick)", text), verb
        assert "[default: no-" not in text and "<list[str]>" not in text and "<int range>" not in text, verb
        assert "[store]" not in text and "{store}" not in text, verb


def test_a_misspelled_metric_option_or_command_gets_one_suggestion(capsys) -> None:
    done = run_cli(["analyze", "x.zarr", "--out", "y.zarr", "--metrics", "alpah"], capsys)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "did you mean 'alpha'?" in done.stderr and len(done.stderr) < 200, done.stderr
    done = run_cli(["analyze", "x.zarr", "--out", "y.zarr", "--metrics", "tangent_enrichmnet"], capsys)
    assert "did you mean 'tangent_enrichment'?" in done.stderr
    done = run_cli(["analyze", "x.zarr", "--out", "y.zarr", "--metirc", "alpha"], capsys)
    assert done.returncode == 2 and "no option --metirc; did you mean '--metrics'?" in done.stderr, done.stderr
    done = run_cli(["analyse", "x.zarr"], capsys)
    assert done.returncode == 2 and "did you mean 'analyze'?" in done.stderr, done.stderr


def test_a_misspelled_statistic_gets_one_suggestion() -> None:
    from tgo_analysis.statistics import statistic
    from tgo_store.errors import TgoError

    with pytest.raises(TgoError, match=r"no statistic called 'token_spectrum'; did you mean 'token_spectra'\?"):
        statistic("token_spectrum")


def test_list_metrics_groups_by_statistic_with_one_line_each(capsys) -> None:
    done = run_cli(["analyze", "--list-metrics"], capsys)
    assert done.returncode == 0
    lines = done.stdout.splitlines()
    for stat in statistics():
        heading = [ln for ln in lines if ln.split() and ln.split()[0] == stat.name]
        assert len(heading) == 1 and len(heading[0].split()) > 2, stat.name  # a name and a description
    listed = [name.strip(",") for ln in lines if ln.startswith(" ") for name in ln.split()]
    assert len(listed) == len(set(listed)), "a metric listed under two statistics"
    assert "similarity" in done.stdout and "a group: cka_layers, cka_checkpoints" in done.stdout


def test_a_statistic_name_selects_what_it_computes() -> None:
    from tgo_analysis.results.selection import parse_metrics
    from tgo_analysis.statistics import statistic

    assert set(parse_metrics("token_spectra")) >= set(statistic("token_spectra").metrics)


def test_lazy_packages_list_their_public_names() -> None:
    import tgo_analysis
    import tgo_store

    assert {"open_store", "Recorder", "ActivationLoader", "ingest"} <= set(dir(tgo_store))
    assert {"analyze"} <= set(dir(tgo_analysis))
