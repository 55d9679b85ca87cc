"""kill -9 after any store write, store creation and append-resize included, then resume;
the same for an analysis, results-store creation and unit writes included.

Each kill point runs in a child forked from a forkserver that imported torch and tgo once; the
child SIGKILLs itself right after its k-th store write (``killer.ingest_and_die``). The same
ingest, re-run, must end with a store byte-identical to an uninterrupted run (commit records
aside: they hold timestamps) and no intent record left. Kill points: every third write of
creation (group, arrays, coordinates, consolidation, the first append), every write of a
later append's resize, and writes inside block writing. ``TGO_KILL_EVERY_WRITE=1`` tries
every single write. Torn kills land inside a write (its temporary file written, not yet
renamed) at fixed points of creation, block writing and an append: the resume removes what
they leave, and no temporary file is left anywhere in any resumed store.

An analysis of the two-checkpoint store is killed at writes of its results store's creation
(every array's metadata, the coordinates, the config), of its first units (chunks, done
record) and of its finish; re-run, it must equal a clean analysis.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
from pathlib import Path

import pytest
import xarray as xr

from tests.reliability import killer
from tests.support import TINY_VIT, TINY_VIT_SPEC, leftover_temporaries, save_checkpoints
from tgo_analysis.analyze import analyze
from tgo_store import ingest, open_store, store_info
from tgo_store.store.record_keys import APPENDING, CREATING

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


@pytest.mark.slow
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


ANALYSIS = {"metrics": "effective_rank,token_correlation", "progress": False}  # 8 samples: no alpha


def _kill_analysis_then_rerun(setup: dict, out: Path, k: int, clean: xr.Dataset, torn: bool = False) -> None:
    kwargs = {**ANALYSIS, "out": str(out)}
    child = setup["ctx"].Process(target=killer.analyze_and_die, args=(k, str(setup["two"]), kwargs, torn))
    child.start()
    child.join(120)
    assert child.exitcode == -9, f"write {k}: the analysis should have been killed (exit {child.exitcode})"
    if torn:
        assert leftover_temporaries(out), f"a kill inside write {k} leaves its temporary file"
    again = analyze(open_store(str(setup["two"])), **kwargs)
    xr.testing.assert_equal(again, clean)
    xr.testing.assert_equal(xr.open_zarr(out).load(), clean)
    assert leftover_temporaries(out) == [], f"kill at write {k}: temporary files left after the re-run"
    assert not (out / CREATING).exists()


def test_kill_an_analysis_in_results_store_creation_and_unit_writes(setup, tmp_path) -> None:
    clean_out, names_file = tmp_path / "clean.zarr", tmp_path / "names.json"
    child = setup["ctx"].Process(target=killer.analyze_and_name_writes,
                                 args=(str(setup["two"]), {**ANALYSIS, "out": str(clean_out)}, str(names_file)))
    child.start()
    child.join(120)
    assert child.exitcode == 0, "the counted analysis failed"
    names = json.loads(names_file.read_text())
    clean = xr.open_zarr(clean_out).load()
    records = [k for k, name in enumerate(names, 1) if name == "RecordStore.put_bytes" and k > 1]  # done records
    first_unit, per_unit = records[0], records[1] - records[0]  # a unit: its chunks, then its done record
    created = first_unit - per_unit  # the last write of the results store's creation
    points = list(range(1, first_unit + 2)) if EVERY else [1, created // 2, created - 1, created, created + 1,
                                                            first_unit, first_unit + per_unit]
    for k in points:
        _kill_analysis_then_rerun(setup, tmp_path / f"m{k}.zarr", k, clean)
    for k in (created // 3, first_unit):
        _kill_analysis_then_rerun(setup, tmp_path / f"t{k}.zarr", k, clean, torn=True)
