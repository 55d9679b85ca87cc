"""kill -9 after any store write, store creation and append-resize included, then resume.

Each kill point runs in a child forked from a forkserver that imported torch and tgo once; the
child SIGKILLs itself right after its k-th store write (``killer.ingest_and_die``). The same
ingest, re-run, must end with a store byte-identical to an uninterrupted run (commit records
aside: they hold timestamps) and no intent record left. Kill points: every third write of
creation (group, arrays, coordinates, consolidation, the first append), every write of a
later append's resize, and writes inside block writing. ``TGO_KILL_EVERY_WRITE=1`` tries
every single write. Torn kills land inside a write (its temporary file written, not yet
renamed) at fixed points of creation, block writing and an append: the resume removes what
they leave, and no temporary file is left anywhere in any resumed store.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
from pathlib import Path

import pytest

from tests.reliability import killer
from tests.support import TINY_VIT, TINY_VIT_SPEC, leftover_temporaries, save_checkpoints
from tgo_store import ingest, store_info
from tgo_store.metadata import APPENDING, CREATING

KWARGS = {"model_spec": TINY_VIT_SPEC, "model_kwargs": dict(TINY_VIT), "data_spec": "synthetic:8",
          "batch_size": 4, "samples_per_block": 4, "device": "cpu", "progress": False}
BLOCK_WRITES = 2 * 7  # 2 blocks x (3 shard deletes + 3 shard writes + 1 commit record)
EVERY = os.environ.get("TGO_KILL_EVERY_WRITE") == "1"


def tree_bytes(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file() and "_tgo" not in p.parts}


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("kill")
    ckpts = save_checkpoints(root / "ckpt", [0, 5])
    one, two = root / "one.zarr", root / "two.zarr"
    create_writes = killer.count_writes(lambda: ingest(str(one), checkpoints=ckpts[:1], **KWARGS))
    shutil.copytree(one, two)
    append_writes = killer.count_writes(lambda: ingest(str(two), checkpoints=ckpts, **KWARGS))
    os.environ[killer.WARM_UP_ENV] = "1"  # the forkserver inherits it and warms up once
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["tests.reliability.killer"])
    return {"root": root, "ckpts": ckpts, "one": one, "two": two, "ctx": ctx,
            "create_writes": create_writes, "append_writes": append_writes}


def _kill_then_resume(setup: dict, store: Path, k: int, ckpts: list[str], reference: Path, torn: bool = False) -> None:
    child = setup["ctx"].Process(target=killer.ingest_and_die,
                                 args=(k, str(store), {**KWARGS, "checkpoints": ckpts}, torn))
    child.start()
    child.join(120)
    assert child.exitcode == -9, f"write {k}: the child should have been killed (exit {child.exitcode})"
    if torn:
        assert leftover_temporaries(store), f"a kill inside write {k} leaves its temporary file"
    summary = ingest(str(store), checkpoints=ckpts, **KWARGS)
    assert summary.blocks_skipped + summary.blocks_written == len(ckpts) * 2
    assert tree_bytes(store) == tree_bytes(reference), f"kill after write {k}: the resumed store differs"
    assert leftover_temporaries(store) == [], f"kill at write {k}: temporary files left after the resume"
    assert not (store / CREATING).exists() and not (store / APPENDING).exists()
    assert store_info(str(store)).complete


def test_kill_inside_store_creation_and_its_blocks(setup, tmp_path) -> None:
    metadata_writes = setup["create_writes"] - BLOCK_WRITES
    points = list(range(1, metadata_writes + 1, 1 if EVERY else 3))
    points += [metadata_writes + 3, metadata_writes + 7, metadata_writes + 10]  # inside block writing
    for k in points:
        store = tmp_path / f"c{k}.zarr"
        _kill_then_resume(setup, store, k, setup["ckpts"][:1], setup["one"])


def test_kill_inside_an_append_resize(setup, tmp_path) -> None:
    metadata_writes = setup["append_writes"] - BLOCK_WRITES
    for k in range(1, metadata_writes + 1):
        store = tmp_path / f"a{k}.zarr"
        shutil.copytree(setup["one"], store)
        _kill_then_resume(setup, store, k, setup["ckpts"], setup["two"])


def test_kill_inside_a_write_leaves_no_temporary_after_resume(setup, tmp_path) -> None:
    """Torn writes: the creation record (1), group and array metadata (2, 5), a shard of the
    first block (metadata + 4), its commit record (metadata + 7), and inside an append."""
    metadata_writes = setup["create_writes"] - BLOCK_WRITES
    for k in (1, 2, 5, metadata_writes + 4, metadata_writes + 7):
        _kill_then_resume(setup, tmp_path / f"t{k}.zarr", k, setup["ckpts"][:1], setup["one"], torn=True)
    store = tmp_path / "ta.zarr"
    shutil.copytree(setup["one"], store)
    _kill_then_resume(setup, store, 3, setup["ckpts"], setup["two"], torn=True)
