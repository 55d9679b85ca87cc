"""Print every module of tgo_store and tgo_analysis with its one job and its public names.

The job is the first sentence of the module docstring; the public names are the module's own
top-level functions and classes without a leading underscore. ARCHITECTURE.md's module index is
this script's output (``python scripts/module_index.py``), and tests/test_architecture.py checks
that it still lists every module.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("tgo_store", "tgo_analysis")


def module_entries() -> list[tuple[str, str, list[str]]]:
    """(dotted path relative to the repo, first docstring sentence, public names) per module."""
    rows = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text())
            doc = (ast.get_docstring(tree) or "").strip().split("\n\n")[0].replace("\n", " ")
            job = doc.split(". ")[0].rstrip(".")
            names = [n.name for n in tree.body
                     if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
                     and not n.name.startswith("_")]
            rows.append((str(path.relative_to(ROOT)), job, names))
    return rows


def main() -> None:
    for path, job, names in module_entries():
        print(f"- `{path}`: {job}." + (f" Public: {', '.join(f'`{n}`' for n in names)}." if names else ""))


if __name__ == "__main__":
    sys.exit(main())
