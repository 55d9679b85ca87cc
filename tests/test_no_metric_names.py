"""Issue 28: no metric name appears in the generic code (analyze.py, engine/, results/, the report's
page and index, the analyze CLI); statistics declare what they compute and the rest reads it.

Checked on the syntax tree: a string literal equal to a SPEC result name of ``tgo_analysis/names.py``,
a name of that module used (``N.ALPHA``) or imported (``from tgo_analysis.names import ALPHA``). The
module itself may be imported for the dims the results template lays out (checkpoint, layer, token,
rank and the pairwise token_other / layer_other), which are not metric names.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tgo_analysis import names as N

ROOT = Path(__file__).resolve().parents[1]
GENERIC = ("tgo_analysis/analyze.py", "tgo_analysis/engine", "tgo_analysis/results", "tgo_analysis/report/__init__.py",
           "tgo_analysis/report/page.py", "tgo_app/cli/analyze.py")
SHARED_DIMS = {N.CHECKPOINT, N.LAYER, N.TOKEN, N.RANK, N.TOKEN_OTHER, N.LAYER_OTHER}
NAMES_MODULE = "tgo_analysis.names"


def metric_names() -> set[str]:
    """Every SPEC result name the names module holds (its upper-case string constants, less the dims
    and the suffixes that build names)."""
    return {value for key, value in vars(N).items() if key.isupper() and isinstance(value, str)
            and not key.endswith("_SUFFIX") and value not in SHARED_DIMS}


def generic_files() -> list[Path]:
    found: list[Path] = []
    for entry in GENERIC:
        path = ROOT / entry
        found += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return found


def naming(path: Path, names: set[str]) -> list[str]:
    """Where ``path`` names a metric: lines with a metric-name literal or a use of the names module."""
    tree = ast.parse(path.read_text(), str(path))
    aliases = {a.asname or a.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
               and node.module == "tgo_analysis" for a in node.names if a.name == "names"}
    aliases |= {a.asname or a.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                for a in node.names if a.name == NAMES_MODULE}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names:
            found.append(f"{node.lineno}: {node.value!r}")
        elif isinstance(node, ast.Attribute) and ast.unparse(node.value) in aliases \
                and getattr(N, node.attr, None) not in SHARED_DIMS:
            found.append(f"{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.ImportFrom) and node.module == NAMES_MODULE \
                and any(getattr(N, a.name, None) not in SHARED_DIMS for a in node.names):
            found.append(f"{node.lineno}: from {NAMES_MODULE} import {', '.join(a.name for a in node.names)}")
    return found


@pytest.mark.parametrize("path", generic_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_generic_code_names_no_metric(path: Path) -> None:
    found = naming(path, metric_names())
    assert not found, f"{path.relative_to(ROOT)} names metrics: {found}"


def test_the_check_sees_a_metric_name(tmp_path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(f"from tgo_analysis import names as N\nfrom tgo_analysis.names import ALPHA\n"
                   f"X = {N.ALPHA_CLUSTER!r}, N.POOLED, N.TOKEN\n")
    assert len(naming(bad, metric_names())) == 3
    assert "alpha" in metric_names() and "token" not in metric_names()
