"""The README's two fresh-machine commands are the ones users and CI actually run."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    """The shell commands of the README's first code block."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```(?:bash|sh|console)?\n(.*?)```", text, re.S)
    assert block, "README.md has no code block"
    return [line for line in block.group(1).splitlines() if line and not line.startswith("#")]


def test_readme_opens_with_demo_and_test_commands() -> None:
    commands = readme_commands()
    assert len(commands) == 2, commands
    demo, tests = commands
    assert "pip install" in demo and demo.rstrip().endswith("tgo demo")
    assert "pip install" in tests and "pytest" in tests


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    test_command = readme_commands()[1]
    assert test_command in ci
