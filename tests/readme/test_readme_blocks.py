"""Every code block of README.md runs: python blocks execute on a tiny store, toml blocks load as a
sweep file, and every `tgo ...` line of a bash block parses against the CLI (options, types,
required arguments) without running (those are long runs on data the reader has).

A block preceded by ``<!-- readme-test: syntax-only (reason) -->`` needs infrastructure a test
machine has not (a Slurm or Kubernetes cluster): it is compiled, not run, and the reason is
printed. Store URLs of the examples are replaced by the tiny store's path.
"""

from __future__ import annotations

import contextlib
import re
import shlex
from pathlib import Path

import numpy as np
import pytest

from tests.support import TINY_VIT, ingest_kwargs, save_checkpoints

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"(<!-- readme-test: ([^>]*?) -->\s*)?```(\w*)\n(.*?)```", re.S)
EXAMPLE_STORES = ("s3://bucket/exp1.zarr", "runs/exp1.zarr", "exp1.zarr")
# a ViT deep enough for `layer=6` and wide enough for the default alpha fit range (11:100 -> 11:22)
README_VIT = {**TINY_VIT, "embed_dim": 32, "depth": 6}
NOT_TGO = ("python3 -m venv", ".venv/bin/")  # the install/test commands: tests/test_readme.py and CI run them


def readme_blocks() -> list[tuple[str, str, str | None]]:
    """(language, source, syntax-only reason or None) of every fenced block, in order."""
    text = (ROOT / "README.md").read_text()
    return [(m.group(3), m.group(4), m.group(2)) for m in BLOCK.finditer(text)]


def blocks_of(lang: str) -> list[tuple[str, str | None]]:
    return [(body, marker) for kind, body, marker in readme_blocks() if kind == lang]


def shell_commands(body: str) -> list[str]:
    """Commands of a bash block: continuation lines joined, comments dropped."""
    joined = body.replace("\\\n", " ")
    return [line.split("  #")[0].strip() for line in joined.splitlines() if line.strip() and not line.startswith("#")]


@pytest.fixture(scope="module")
def readme_store(tmp_path_factory) -> str:
    from tgo_store.ingestion import ingest

    root = tmp_path_factory.mktemp("readme")
    ckpts = save_checkpoints(root / "ckpt", [0, 100], embed_dim=README_VIT["embed_dim"], depth=README_VIT["depth"])
    url = str(root / "exp1.zarr")
    ingest(url, **ingest_kwargs(ckpts, model_kwargs=dict(README_VIT)))
    return url


def test_every_block_is_checked() -> None:
    kinds = {lang for lang, _, _ in readme_blocks()}
    assert kinds <= {"bash", "python", "toml", ""}, kinds  # "" is the pipeline diagram
    assert len(blocks_of("python")) >= 3 and len(blocks_of("bash")) >= 4


@pytest.mark.parametrize("index", range(len(blocks_of("python"))))
def test_python_block_runs(index, readme_store, tmp_path, monkeypatch) -> None:
    import matplotlib

    matplotlib.use("Agg")
    body, marker = blocks_of("python")[index]
    if marker:
        compile(body, f"README python block {index}", "exec")
        print(f"README python block {index}: compiled only ({marker})")
        return
    for url in EXAMPLE_STORES:
        body = body.replace(f'"{url}"', repr(readme_store if "Recorder" not in body else str(tmp_path / "live.zarr")))
    namespace = {"__name__": "readme"}
    if "Recorder" in body:  # the live-capture loop: a tiny model, probe images, two steps
        import torch

        from tests.support import tiny_vit

        namespace.update(model=tiny_vit(**README_VIT), steps=2,
                         probe_images=torch.randn(8, 1, TINY_VIT["img_size"], TINY_VIT["img_size"]),
                         probe_labels=list(range(8)))
    monkeypatch.chdir(tmp_path)
    exec(compile("import tgo_store\n" + body, f"README python block {index}", "exec"), namespace)
    if "Recorder" in body:
        from tgo_store.store.open import open_store

        assert open_store(str(tmp_path / "live.zarr")).sizes["checkpoint"] == 1  # step 0 captured
    if "token_kind" in body:  # the slicing example selects every patch token and nothing else
        from tgo_store.store.open import open_store

        ds = open_store(readme_store)
        kinds = np.array([str(k) for k in ds.token_kind.values])
        assert int((kinds == "patch").sum()) == ds.sizes["token"] - 1


@pytest.mark.parametrize("index", range(len(blocks_of("toml"))))
def test_toml_block_is_a_valid_sweep_file(index, tmp_path) -> None:
    from tgo_app.sweep import load_config

    path = tmp_path / "sweep.toml"
    path.write_text(blocks_of("toml")[index][0])
    cfg = load_config(path)
    assert cfg.store


def _parse(args: list[str]) -> None:
    """Parse ``tgo ARGS`` as click would, up to (not including) running the verb."""
    import click
    import typer

    from tgo_app.cli import _register_verbs, app

    _register_verbs()
    group = typer.main.get_command(app)
    with click.Context(group, info_name="tgo") as ctx:
        command = group.get_command(ctx, args[0])
        assert command is not None, f"tgo has no verb {args[0]!r}"
        with contextlib.suppress(click.exceptions.Exit, typer.Exit):  # an eager option ran and exited
            command.make_context(args[0], list(args[1:]), parent=ctx)


@pytest.mark.parametrize("index", range(len(blocks_of("bash"))))
def test_bash_block_parses_against_the_cli(index) -> None:
    body, _ = blocks_of("bash")[index]
    commands = shell_commands(body)
    assert commands
    for command in commands:
        if command.startswith(NOT_TGO):
            continue
        assert command.startswith("tgo "), f"README bash line is neither a tgo command nor the install line: {command}"
        args = shlex.split(re.sub(r"\[([^\]]*)\]", r"\1", command))[1:]  # [--optional flags] are shown in brackets
        _parse(args)


def test_a_misspelt_option_would_fail() -> None:
    with pytest.raises(Exception, match="No such option: --metricz"):
        _parse(["analyze", "exp1.zarr", "--out", "m.zarr", "--metricz", "all"])
