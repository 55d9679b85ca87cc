"""Temporary files of killed writes: `tgo info` removes the ones no writer can own and reports
the rest; the resuming ingest removes those too (issue 21). Real torn writes are made in
tests/reliability/test_kill_anywhere.py; here each kind is planted where zarr puts it."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

from tests.support import TINY_VIT, TINY_VIT_SPEC, leftover_temporaries, save_checkpoints
from tgo_app.cli import main
from tgo_store import ingest

KWARGS = {"model_spec": TINY_VIT_SPEC, "model_kwargs": dict(TINY_VIT), "data_spec": "synthetic:8",
          "batch_size": 4, "samples_per_block": 4, "device": "cpu", "progress": False}


def _partial(path: Path) -> Path:
    """The temporary zarr's LocalStore writes for ``path`` (``path.with_suffix(f".{uuid}.partial")``)."""
    torn = path.with_suffix(f".{uuid.uuid4().hex}.partial")
    torn.write_bytes(b"\0" * 1000)
    return torn


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_info_removes_what_no_writer_owns_and_the_resume_the_rest(tmp_path, capsys) -> None:
    ckpts = save_checkpoints(tmp_path / "ckpt", [0])
    reference, store = tmp_path / "ref.zarr", tmp_path / "s.zarr"
    ingest(str(reference), checkpoints=ckpts, **KWARGS)
    shutil.copytree(reference, store)
    shutil.copy(str(reference) + ".lock", str(store) + ".lock")
    shard = store / "activations" / "c" / "0" / "1" / "1" / "0" / "0"
    garbage = [_partial(store / "activations" / "c" / "0" / "1" / "0" / "0" / "0"),  # a committed block's shard
               _partial(store / "checkpoint" / "zarr.json"),  # metadata: written only under the lock
               store / "_tgo" / "blocks" / "c000000" / f"b000000.json.{_dead_pid()}.tmp"]  # a record, writer gone
    garbage[-1].write_text("{")
    (store / "_tgo" / "blocks" / "c000000" / "b000001.json").unlink()  # block 1 uncommitted: a writer may own it
    unfinished = _partial(shard)
    main(["info", str(store)])
    out = capsys.readouterr().out
    assert "removed 3 temporary file(s)" in out and "1 temporary file(s)" in out, out
    assert leftover_temporaries(store) == [str(unfinished.relative_to(store))]
    summary = ingest(str(store), checkpoints=ckpts, **KWARGS)
    assert summary.blocks_written == 1 and leftover_temporaries(store) == []
    assert sorted(p.relative_to(store) for p in store.rglob("*") if "_tgo" not in p.parts) == \
        sorted(p.relative_to(reference) for p in reference.rglob("*") if "_tgo" not in p.parts)
    main(["info", str(store)])
    assert "temporary" not in capsys.readouterr().out
