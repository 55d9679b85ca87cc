"""The figure checker: each defect class of issue 32 drawn on purpose is caught, and the report's own
figures pass (here on the fake results; on both demos' results in test_demo_report / test_text_demo)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest

from tgo_analysis.report import checks as C
from tgo_analysis.report import figures as F
from tgo_analysis.report import similarity as SIM


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def kinds(problems: list[C.Problem]) -> set[str]:
    return {p.check for p in problems}


def test_a_legend_entry_with_nothing_drawn_is_caught() -> None:
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 2], "-", color="C0", label="drawn")
    ax.plot([], [], "k-", label="tangent Q_T")  # the old updates figure: a key for a line never drawn
    ax.legend()
    problems = C.check_legends("x", fig)
    assert [p.message for p in problems] == ["legend entry 'tangent Q_T' has nothing drawn"]
    fig2, ax2 = plt.subplots()
    ax2.plot([0, 1], [1, 2], "--", color="C0")
    fig2.legend(handles=[plt.Line2D([], [], color="grey", ls="-", label="solid quantity")])  # a style key
    assert kinds(C.check_legends("x", fig2)) == {"legend"}
    ax2.plot([0, 1], [2, 3], "-", color="C1")
    assert C.check_legends("x", fig2) == []


def test_an_all_nan_line_needs_a_note() -> None:
    fig, ax = plt.subplots()
    ax.plot([0, 1, 2], [np.nan] * 3, label="layer 0")
    ax.plot([0, 1, 2], [1, 2, 3], label="layer 1")
    assert kinds(C.check_undrawn_lines("x", fig)) == {"undrawn"}
    F.note(ax, "layer 0: no value")
    assert C.check_undrawn_lines("x", fig) == []


def test_an_empty_panel_or_blank_strip_needs_a_note() -> None:
    fig, (a, b) = plt.subplots(1, 2)
    a.plot([0, 1], [np.nan, np.nan])
    values = np.ones((4, 4))
    values[0, :] = values[:, 0] = np.nan  # the old CKA cls row: layer 0 blank, unexplained
    b.imshow(values)
    assert len(C.check_empty("x", fig)) == 2
    F.note(a, "no value")
    F.note(b, "blank: layer 0")
    assert C.check_empty("x", fig) == []


def test_fractional_ticks_on_an_integer_axis_are_caught() -> None:
    fig, ax = plt.subplots()
    ax.imshow(np.eye(16))
    ax.set_xlabel("position in the sequence")
    ax.set_xticks([0, 2.5, 5.0])  # the old token-correlation matrices
    assert kinds(C.check_integer_ticks("x", fig)) == {"integer"}
    ax.set_xticks([0, 5, 10, 15])
    assert C.check_integer_ticks("x", fig) == []


def test_a_linear_step_axis_is_caught() -> None:
    fig, ax = plt.subplots()
    ax.plot([0, 1, 3, 12, 144], [0, 1, 2, 3, 4])
    ax.set_xlabel("training step")  # the old convergence figure
    assert kinds(C.check_step_scale("x", fig)) == {"step"}
    F.step_axis(ax, [0, 144])
    assert C.check_step_scale("x", fig) == []


def test_a_caption_count_that_disagrees_with_the_axes_is_caught(fake_results) -> None:
    fig, axes = plt.subplots(1, 2)
    for ax, step in zip(axes, (0, 100), strict=True):  # 2 of the 3 checkpoints, as the old CKA figure drew 5 of 7
        ax.imshow(np.eye(3))
        ax.set_title(f"step {step} · mean")
    problems = C.check_counts("x", fig, "one column per checkpoint", fake_results)
    assert kinds(problems) == {"count"} and "missing [10]" in problems[0].message
    full = SIM.layer_heatmaps(fake_results.assign(
        cka_layers=(("checkpoint", "representation", "layer", "layer_other"), np.ones((3, 1, 4, 4))),
    ).assign_coords(representation=["mean"], layer_other=np.arange(4)))
    assert C.check_counts("x", full, SIM.heatmap_caption(fake_results), fake_results) == []


def test_a_literal_claim_and_a_value_dependent_caption_are_caught(fake_results) -> None:
    def literal(res):  # the old frequency caption: a fixed claim, whatever the numbers
        return "frequent tokens lie farther from the pooled mean."

    def from_values(res):
        return f"top-1 share peaks at {float(res['top1_share_all'].max()):.2f}."

    assert kinds(C.check_sentences("x", None, literal, fake_results)) == {"sentence"}
    assert C.check_sentences("x", None, from_values, fake_results) == []
    assert kinds(C.check_sentences("x", from_values, None, fake_results)) == {"sentence"}  # a claim in a caption


def test_the_report_figures_of_the_fake_results_pass(fake_results, fake_training) -> None:
    problems = C.check_report(fake_results, {"training": fake_training})
    assert problems == [], C.summary(problems)


def test_a_plugin_section_joins_the_page_through_the_registry(fake_results, tmp_path, monkeypatch) -> None:
    """A statistic's report section is registered, not named by the page: the page draws it when the
    results hold its variable, lists nothing for it otherwise, and the checker reads it like the others."""
    from tgo_analysis.report import sections, write_report

    def draw(res, options):
        fig, ax = plt.subplots()
        for ci, step in enumerate(res["checkpoint"].values):
            ax.plot(res["layer"].values, res["kurtosis"].isel(checkpoint=ci).values, label=f"step {int(step)}")
        F.layer_axis(ax)
        ax.legend()
        return fig

    section = sections.Section("kurtosis", "Kurtosis across layers", "Mean kurtosis, one line per checkpoint.", draw,
                               group="kurtosis", needs=("kurtosis",))
    sections.registered()
    monkeypatch.setitem(sections._REGISTRY, section.key, section)
    without = write_report(fake_results, tmp_path / "a").read_text()
    assert "Kurtosis across layers" not in without
    res = fake_results.assign(kurtosis=(("checkpoint", "layer"), np.ones((3, 4))))
    page = write_report(res, tmp_path / "b").read_text()
    assert "Kurtosis across layers" in page and (tmp_path / "b" / "kurtosis.png").exists()
    assert [p for p in C.check_report(res, {}) if p.section == "kurtosis"] == []


def test_a_fit_line_off_its_points_is_caught() -> None:
    """The old per-position eigenspectrum: numerical zeros (1e-17) inside the fit ranks pulled the line's
    intercept decades below the points; the line over the nonzero eigenvalues lies on them."""
    ranks = np.arange(1, 101, dtype=float)
    eigs = np.r_[ranks[:60] ** -1.2, np.full(40, 1e-17)]  # rank 60 of 100 features: 40 numerical zeros
    old_intercept = np.mean(np.log(eigs[10:90]) + 1.2 * np.log(ranks[10:90]))
    fig, ax = plt.subplots()
    ax.loglog(ranks, eigs, ".", color="C0")
    ax.loglog(ranks[10:90], np.exp(old_intercept) * ranks[10:90] ** -1.2, "-", color="C0", label="alpha = 1.20")
    assert kinds(C.check_fit_lines("x", fig)) == {"fit"}
    fig2, ax2 = plt.subplots()
    nonzero = F.nonzero_eigenvalues(eigs, 100)
    line_ranks, line = F.alpha_fit_line(nonzero, 1.2, (11, 100))
    ax2.loglog(np.arange(1, nonzero.size + 1), nonzero, ".", color="C0")
    ax2.loglog(line_ranks, line, "-", color="C0", label="alpha = 1.20")
    assert nonzero.size == 60 and line_ranks[-1] == 50
    assert C.check_fit_lines("x", fig2) == []
