"""A full disk during ingest (issue 30): one line naming where and saying a re-run resumes, no
traceback, no "bug in tgo"; after space is freed the same command finishes a store
byte-identical to a clean one, with no temporary file left.

Two ways to fill the disk: a real tmpfs mounted small and then remounted larger (needs root and
a sandbox that allows mounts; skipped otherwise), and a shim that makes every store write after
the k-th fail with ENOSPC (zarr's LocalStore writes and tgo's records), which runs anywhere.
"""

from __future__ import annotations

import errno
import functools
import inspect
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import zarr.storage

from tests.support import cli_args, leftover_temporaries, run_cli, save_checkpoints, store_bytes
from tgo_store.store.records import RecordStore


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("full")
    save_checkpoints(root / "ckpt", [0, 5])
    store = root / "clean.zarr"
    glob = str(root / "ckpt" / "*.pth")
    from tgo_app.cli import main

    main(cli_args(glob, str(store)))
    used = int(subprocess.run(["du", "-sk", str(store)], capture_output=True, text=True).stdout.split()[0])
    return {"glob": glob, "bytes": store_bytes(store), "kib": used}


@pytest.fixture
def small_tmpfs(tmp_path, clean) -> Iterator[Path]:
    disk = tmp_path / "disk"
    disk.mkdir()
    size = max(64, clean["kib"] // 2)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}k", "tmpfs", str(disk)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()[:80]}); the shim case covers ENOSPC")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _check_full_then_resume(store: Path, clean: dict, capsys, free_space) -> None:
    done = run_cli(cli_args(clean["glob"], str(store)), capsys)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert f"no space left on {store}" in lines[0] and "re-run the same command" in lines[0], lines[0]
    assert "bug in tgo" not in lines[0]
    free_space()
    again = run_cli(cli_args(clean["glob"], str(store)), capsys)
    assert again.returncode == 0, again.stderr
    assert store_bytes(store) == clean["bytes"]
    assert leftover_temporaries(store) == []


def test_a_full_tmpfs_is_one_line_and_a_resume_after_remount_is_clean(small_tmpfs, clean, capsys) -> None:
    def grow() -> None:
        subprocess.run(["mount", "-o", f"remount,size={4 * clean['kib'] + 1024}k", str(small_tmpfs)], check=True)

    _check_full_then_resume(small_tmpfs / "store.zarr", clean, capsys, grow)


@pytest.mark.parametrize("after", [3, 40])  # during creation, during block writing
def test_enospc_from_any_store_write_is_one_line_and_resumes(after, tmp_path, clean, capsys, monkeypatch) -> None:
    writes = [0]

    def failing(original):
        if inspect.iscoroutinefunction(original):  # zarr's LocalStore writes
            @functools.wraps(original)
            async def wrapped(self, *args, **kwargs):
                writes[0] += 1
                if writes[0] > after:
                    raise OSError(errno.ENOSPC, "No space left on device", str(args[0]) if args else "")
                return await original(self, *args, **kwargs)
        else:
            @functools.wraps(original)
            def wrapped(self, *args, **kwargs):
                writes[0] += 1
                if writes[0] > after:
                    raise OSError(errno.ENOSPC, "No space left on device", str(args[0]) if args else "")
                return original(self, *args, **kwargs)
        return wrapped

    monkeypatch.setattr(zarr.storage.LocalStore, "_set", failing(zarr.storage.LocalStore._set))
    monkeypatch.setattr(RecordStore, "put_bytes", failing(RecordStore.put_bytes))
    _check_full_then_resume(tmp_path / "store.zarr", clean, capsys, monkeypatch.undo)
    assert writes[0] > after


def test_disk_full_message_names_the_store(tmp_path) -> None:
    from tgo_store.no_space import no_space_error

    exc = OSError(errno.ENOSPC, "No space left on device")
    assert no_space_error(OSError(errno.EACCES, "denied"), "s.zarr") is None
    assert str(no_space_error(exc, str(tmp_path / "s.zarr"))).startswith(f"no space left on {tmp_path / 's.zarr'}")
    # zarrs (the Rust codec pipeline) raises a RuntimeError with the OS message: a full disk too
    # (seen in a fresh-clone suite: "unexpected RuntimeError: No space left on device (os error 28) ... bug")
    rust = RuntimeError("No space left on device (os error 28)")
    assert str(no_space_error(rust, str(tmp_path / "r.zarr"))).startswith(f"no space left on {tmp_path / 'r.zarr'}")
    assert no_space_error(RuntimeError("chunk decode failed"), "r.zarr") is None
