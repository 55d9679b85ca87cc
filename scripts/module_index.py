"""Print every module of tgo_store, tgo_analysis and tgo_app with its one job and its public names.

The job is the first sentence of the module docstring; the public names are the module's own
top-level functions and classes without a leading underscore. ARCHITECTURE.md's module index is
this script's output (``python scripts/module_index.py --write`` rewrites it in place), and tests/test_architecture.py checks
that it still lists every module.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("tgo_store", "tgo_analysis", "tgo_app")


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


def index_lines() -> list[str]:
    """The module index, one markdown bullet per module."""
    return [f"- `{path}`: {job}." + (f" Public: {', '.join(f'`{n}`' for n in names)}." if names else "")
            for path, job, names in module_entries()]


def write_index(doc: Path = ROOT / "ARCHITECTURE.md") -> None:
    """Replace the bullets of the document's module index with the current ones (the text around them stays)."""
    lines = doc.read_text().splitlines()
    start = lines.index("## Module index")
    bullets = [i for i, line in enumerate(lines) if i > start and line.startswith("- `tgo_")]
    first, last = bullets[0], bullets[-1]
    doc.write_text("\n".join([*lines[:first], *index_lines(), *lines[last + 1:]]) + "\n")


def main() -> None:
    if "--write" in sys.argv[1:]:
        write_index()
        return
    print("\n".join(index_lines()))


if __name__ == "__main__":
    sys.exit(main())
