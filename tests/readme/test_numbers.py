"""Each number quoted on README.md, the docs pages and benchmarks/README.md equals its source
results file (SPEC 8), and the README stays a user's guide of at most 250 lines."""

from __future__ import annotations

import pytest

from tests.readme.numbers import ROOT, Quoted, matches, quoted_numbers, source_numbers

README_MAX_LINES = 250
MEASURED = ["README.md", "docs/findings.md"]  # every number on these pages is a measurement
# numbers outside a marked passage that are not measurements, per page: (number, why)
ALLOWED: dict[str, dict[str, str]] = {
    "README.md": {},
    "docs/findings.md": {},
}


def _documents() -> list[str]:
    return [*MEASURED, "benchmarks/README.md"]


def test_readme_is_short() -> None:
    lines = (ROOT / "README.md").read_text().count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; the user's guide keeps to {README_MAX_LINES}"


@pytest.mark.parametrize("document", _documents())
def test_every_quoted_number_matches_its_source(document: str) -> None:
    numbers: dict[str, list[float]] = {}
    wrong: list[Quoted] = []
    for q in quoted_numbers(document):
        if not q.sources:
            continue
        pool = [n for path in q.sources for n in numbers.setdefault(path, source_numbers(path))]
        if not matches(q, pool):
            wrong.append(q)
    assert not wrong, "\n".join(f"{q.document}:{q.line}: {q.text} is in none of {', '.join(q.sources)}" for q in wrong)


@pytest.mark.parametrize("document", MEASURED)
def test_measured_pages_quote_only_sourced_numbers(document: str) -> None:
    loose = [q for q in quoted_numbers(document) if not q.sources and q.text not in ALLOWED[document]]
    assert not loose, "\n".join(f"{q.document}:{q.line}: {q.text} has no <!-- numbers: SOURCE --> passage" for q in loose)


def test_a_wrong_number_would_fail(tmp_path, monkeypatch) -> None:
    import tests.readme.numbers as numbers

    (tmp_path / "r.json").write_text('{"a": {"seconds": 174.5, "acc": [0.963]}, "note": "7 checkpoints"}')
    (tmp_path / "d.md").write_text("<!-- numbers: r.json -->\nIt took 174.5 s (0.1745 ks), acc 96.3 %, 7 steps.\n"
                                   "Not 175.5 s. `--seq-len 64` is code.\n<!-- /numbers -->\nOutside: 12.\n")
    monkeypatch.setattr(numbers, "ROOT", tmp_path)
    found = numbers.quoted_numbers("d.md")
    pool = numbers.source_numbers("r.json")
    assert [q.text for q in found if not numbers.matches(q, pool) and q.sources] == ["175.5"]
    assert [q.text for q in found if not q.sources] == ["12"]
