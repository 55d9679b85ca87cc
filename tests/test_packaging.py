"""Packaging as a user meets it (SPEC 9): `tgo --version`, `__version__`, `py.typed`, an SPDX
license with its file, torch as a range (pins live in the CI constraints file), and a `tgo --help`
that does not import the heavy libraries."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
HEAVY = ("torch", "dask", "xarray", "pandas", "scipy", "matplotlib", "transformers", "timm", "zarr")


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def test_tgo_version_in_a_fresh_process() -> None:
    tgo = Path(sys.executable).with_name("tgo")
    out = subprocess.run([str(tgo), "--version"], capture_output=True, text=True, env=_env(), timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"tgo {version('tgo')}"


def test_package_versions_come_from_the_metadata() -> None:
    import tgo_analysis
    import tgo_store

    assert tgo_store.__version__ == tgo_analysis.__version__ == version("tgo")
    assert "version" in PYPROJECT["project"]  # the one source: pyproject's version, read back by importlib.metadata


def test_help_imports_no_heavy_library() -> None:
    probe = ("import sys\nfrom tgo_app.cli import main\n"
             "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
             f"print('LOADED', sorted(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=_env(), timeout=60)
    assert out.returncode == 0, out.stderr
    assert "Commands" in out.stdout and "analyze" in out.stdout  # the help itself was printed
    assert out.stdout.strip().splitlines()[-1] == "LOADED []"


def test_lazy_package_names_are_the_functions() -> None:
    import tgo_analysis
    import tgo_analysis.analyze  # the submodule of the same name must not replace the function
    from tgo_analysis.analyze import METRICS, analyze

    assert tgo_analysis.analyze is analyze and tgo_analysis.METRICS is METRICS


def test_typed_packages_and_spdx_license() -> None:
    project = PYPROJECT["project"]
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]
    assert "MIT License" in (ROOT / "LICENSE").read_text()
    data = PYPROJECT["tool"]["setuptools"]["package-data"]
    for package in ("tgo_store", "tgo_analysis", "tgo_app"):
        assert "py.typed" in data[package] and (ROOT / package / "py.typed").is_file()
    backend = [Requirement(r) for r in PYPROJECT["build-system"]["requires"] if r.startswith("setuptools")]
    assert backend and not backend[0].specifier.contains("76.9")  # PEP 639 license fields need setuptools 77


def test_torch_is_a_range_and_ci_pins_it() -> None:
    requirements = {Requirement(r).name: Requirement(r) for r in PYPROJECT["project"]["dependencies"]}
    pins = dict(line.split("==") for line in (ROOT / "constraints" / "ci.txt").read_text().splitlines()
                if line and not line.startswith("#"))
    for name in ("torch", "torchvision"):
        spec = requirements[name].specifier
        assert not any(s.operator == "==" for s in spec), f"{name} is pinned in the library: {spec}"
        assert spec.contains(pins[name]), f"constraints/ci.txt pins {name} {pins[name]} outside {spec}"
    assert "-c constraints/ci.txt" in (ROOT / ".ci" / "run").read_text()
