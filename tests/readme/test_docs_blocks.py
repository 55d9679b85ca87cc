"""Every `tgo ...` line of a bash block on the documentation pages parses against the CLI, as the
README's do (tests/readme/test_readme_blocks.py): a misspelt or removed option fails here."""

from __future__ import annotations

import re
import shlex

import pytest

from tests.readme.test_readme_blocks import BLOCK, ROOT, _parse, shell_commands


def docs_commands() -> list[tuple[str, str]]:
    found = []
    for page in sorted((ROOT / "docs").rglob("*.md")):
        for m in BLOCK.finditer(page.read_text()):
            if m.group(3) == "bash":
                found += [(str(page.relative_to(ROOT)), c) for c in shell_commands(m.group(4)) if c.startswith("tgo ")]
    return found


@pytest.mark.parametrize(("page", "command"), docs_commands())
def test_docs_command_parses(page: str, command: str) -> None:
    args = shlex.split(re.sub(r"\[([^\]]*)\]", r"\1", command))[1:]
    _parse(args)


def test_the_guides_show_commands() -> None:
    assert len({page for page, _ in docs_commands()}) >= 6
