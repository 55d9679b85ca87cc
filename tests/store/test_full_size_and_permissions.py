"""A full-size 785-token ViT store checked against timm; read-only and other-schema stores refused by the CLI."""

from __future__ import annotations

import ctypes
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

from tests.support import cli_args, ingest_kwargs, run_cli, save_checkpoints
from tgo_store import ingest, open_store

TGO = [sys.executable, "-m", "tgo_app.cli"]
NOBODY = 65534


def tgo(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([*TGO, *args], capture_output=True, text=True, **kwargs)


def whole_tree(path: Path) -> dict[str, bytes | None]:
    """Every file (with its bytes) and every folder (None) under path, commit records included."""
    return {str(p.relative_to(path)): (p.read_bytes() if p.is_file() else None) for p in sorted(path.rglob("*"))}


def one_error_line(done: subprocess.CompletedProcess) -> str:
    report = f"exit status {done.returncode}, stderr:\n{done.stderr[-3000:]}"
    assert done.returncode == 2, report
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tgo: error:"), report
    assert "Traceback" not in done.stderr + done.stdout
    return lines[0]


# --- 1. a full-size model: 785 tokens x 384 features x 13 layers ---------------------------------


def test_full_size_vit_small_patch8_store_matches_timm(tmp_path) -> None:
    import timm

    from tgo_store.capture.models import input_config
    from tgo_store.sources import open_source

    torch.manual_seed(1234)
    model = timm.create_model("vit_small_patch8_224", pretrained=False).eval()
    ckpt = tmp_path / "step_100.pth"
    torch.save(model.state_dict(), ckpt)
    url = str(tmp_path / "vit_s8.zarr")
    summary = ingest(url, model_spec="vit_small_patch8_224", checkpoints=str(ckpt), data_spec="synthetic:4",
                     batch_size=2, samples_per_block=2, device="cpu", progress=False)
    assert summary.blocks_written == 2 and summary.samples == 4

    ds = open_store(url)
    act = ds.activations
    assert act.dims == ("checkpoint", "layer", "sample", "token", "feature")
    assert act.shape == (1, 13, 4, 785, 384) and act.dtype == np.float16
    assert ds.checkpoint.values.tolist() == [100] and ds.layer.values.tolist() == list(range(13))
    assert ds.token.values.tolist() == list(range(785)) and ds.sample.values.tolist() == [0, 1, 2, 3]
    assert ds.layer_name.values.tolist()[-1] == "blocks.11"
    kinds = [str(k) for k in ds.token_kind.values]
    assert kinds[0] == "cls" and kinds[1:] == ["patch"] * 784
    rows, cols = ds.token_row.values, ds.token_col.values
    assert rows[0] == -1 and cols[0] == -1
    grid = np.stack([rows[1:], cols[1:]], axis=1)
    expected_grid = np.array([(r, c) for r in range(28) for c in range(28)])
    np.testing.assert_array_equal(grid, expected_grid)  # row-major 28 x 28, like timm's flatten(2)

    # The same inputs as ingest: the model's own input config, the second batch of the second block.
    cfg = input_config(model)
    assert (cfg["image_size"], cfg["in_chans"]) == (224, 3)
    source = open_source("synthetic:4", image_size=cfg["image_size"], in_chans=cfg["in_chans"],
                         mean=cfg["mean"], std=cfg["std"])
    batch = next(source.batches(2, start=2, stop=4))
    assert batch.sample_ids.tolist() == [2, 3]
    x = torch.from_numpy(batch.inputs)
    with torch.no_grad():
        patches, prefix = model.forward_intermediates(x, return_prefix_tokens=True, norm=False, output_fmt="NLC",
                                                      intermediates_only=True)[-1]
        last = torch.cat([prefix, patches], dim=1)
        assert model.patch_embed.norm.__class__.__name__ == "Identity"
        embedded = model.patch_embed.proj(x).flatten(2).transpose(1, 2)
        embedded = torch.cat([model.cls_token.expand(2, -1, -1), embedded], dim=1) + model.pos_embed
    assert last.shape == embedded.shape == (2, 785, 384)

    stored = act.isel(checkpoint=0, sample=slice(2, 4)).values  # (layer, sample, token, feature)
    np.testing.assert_array_equal(stored[12], last.numpy().astype(np.float16))
    # layer 0 by an independent path: within float16 rounding of the float32 embedding
    np.testing.assert_allclose(stored[0].astype(np.float32), embedded.numpy(), rtol=2**-10, atol=1e-6)
    assert not np.array_equal(stored[0], stored[12])
    assert np.isfinite(act.values.astype(np.float32)).all() and np.abs(act.isel(sample=slice(0, 2)).values).max() > 0


# --- 2. a read-only store, refused even when the tests run as root --------------------------------


_PRCTL = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


def _drop_file_capabilities() -> None:
    """preexec_fn for root: remove the capabilities that bypass file permissions (DAC override,
    DAC read/search, fowner) from the bounding set, so the exec'd interpreter, still uid 0 and
    owner of the store, honours its mode bits (uid 0 gets only the bounding set on exec)."""
    for cap in (1, 2, 3):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER
        if _PRCTL(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def _unprivileged_modes() -> list[tuple[str, dict]]:
    """Ways to run a subprocess that file permissions apply to, best first."""
    if os.geteuid() != 0:
        return [("self", {})]
    modes = []
    if _PRCTL is not None:
        modes.append(("root without CAP_DAC_OVERRIDE", {"preexec_fn": _drop_file_capabilities}))
    modes.append(("nobody", {"user": NOBODY, "group": NOBODY, "extra_groups": []}))
    return modes


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder outside pytest's 0o700 tmp root, so that 'nobody' can reach it; removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="tgo-ro-", dir="/tmp" if os.path.isdir("/tmp") else None))
    path.chmod(0o755)
    try:
        yield path
    finally:
        for p in [path, *path.rglob("*")]:
            if p.is_dir() and not p.is_symlink():
                p.chmod(0o755)
        shutil.rmtree(path)


def _closed_to_others() -> str:
    """Folders on the way to the interpreter and the source tree that other users cannot enter."""
    paths = {*Path(os.path.realpath(sys.executable)).parents, *Path(__file__).resolve().parents}
    closed = sorted(str(p) for p in paths if p.is_dir() and not p.stat().st_mode & 0o001)
    return ", ".join(f"{oct(Path(p).stat().st_mode & 0o777)} {p}" for p in closed) or "none found"


def _pick_mode(shared_dir: Path, probe_file: Path) -> tuple[str, dict]:
    """The first unprivileged mode that can run tgo but cannot write a 0o444 file; skip if none."""
    code = (f"import tgo_app.cli, tgo_store\n"
            f"try:\n    open({str(probe_file)!r}, 'ab')\nexcept PermissionError:\n    print('denied')\n"
            f"else:\n    print('written')\n")
    reasons = []
    for name, kwargs in _unprivileged_modes():
        try:
            done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=shared_dir,
                                  env={**os.environ, "HOME": str(shared_dir)}, **kwargs)
            if done.stdout.strip() == "denied":
                return name, kwargs
            why = done.stdout.strip() or (done.stderr.strip().splitlines() or ["?"])[-1]
        except (OSError, subprocess.SubprocessError) as exc:
            why = f"cannot start ({exc})"
        if name == "nobody":
            why += f"; closed to other users: {_closed_to_others()}"
        reasons.append(f"{name}: {why}")
    pytest.skip("no way to run tgo as a user that file permissions apply to (" + "; ".join(reasons) + ")")


@pytest.mark.parametrize("parent", ["writable", "read-only"])
def test_read_only_store_is_refused_and_unchanged(parent, shared_dir) -> None:
    ckpt_dir = shared_dir / "ckpt"
    first, second = save_checkpoints(ckpt_dir, [0, 50])
    for p in (ckpt_dir, Path(first), Path(second)):
        p.chmod(0o755 if p.is_dir() else 0o644)
    store = shared_dir / "ro.zarr"
    ingest(str(store), **ingest_kwargs([first]))
    store.with_name("ro.zarr.lock").unlink(missing_ok=True)  # left by the setup run above

    for p in [*store.rglob("*"), store]:
        p.chmod(0o555 if p.is_dir() else 0o444)
    name, privileges = _pick_mode(shared_dir, store / "zarr.json")
    home = shared_dir / "home"
    home.mkdir()
    if name == "nobody":
        os.chown(home, NOBODY, NOBODY)
        if parent == "writable":  # only the store is read-only: the lock file beside it can be made
            os.chown(shared_dir, NOBODY, NOBODY)
    if parent == "read-only":
        shared_dir.chmod(0o555)
    snapshot = whole_tree(store)
    modes = {p: stat.S_IMODE(p.stat().st_mode) for p in [store, *store.rglob("*")]}

    # a new checkpoint must be appended: this run has to write, and must be refused
    done = tgo(*cli_args(str(ckpt_dir / "*.pth"), str(store)), cwd=shared_dir,
               env={**os.environ, "HOME": str(home)}, **privileges)
    line = one_error_line(done)
    assert str(store) in line and ("read-only" in line or "cannot write" in line), (name, line)
    assert whole_tree(store) == snapshot
    assert {p: stat.S_IMODE(p.stat().st_mode) for p in [store, *store.rglob("*")]} == modes


# --- 3. a store of another schema version, refused by every verb that reads it -------------------


@pytest.fixture(scope="module")
def small_store(checkpoints, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("schema") / "store.zarr"
    ingest(str(path), **ingest_kwargs(checkpoints[:1]))
    return path


@pytest.mark.parametrize("verb", ["ingest", "info", "analyze"])
def test_other_schema_version_is_refused_by_the_cli(verb, small_store, checkpoints, tmp_path, capsys) -> None:
    # tests/store/test_ingest.py checks the Python ingest API; this checks the CLI's one-line errors.
    store = tmp_path / "future.zarr"
    shutil.copytree(small_store, store)
    group = zarr.open_group(str(store), mode="r+")
    group.attrs["tgo_schema"] = 99
    zarr.consolidate_metadata(str(store))
    assert zarr.open_consolidated(str(store)).attrs["tgo_schema"] == 99
    snapshot = whole_tree(store)
    out = tmp_path / "results.zarr"
    args = {"ingest": cli_args(checkpoints[0], str(store)), "info": ["info", str(store)],
            "analyze": ["analyze", str(store), "--out", str(out), "--quiet"]}[verb]
    line = one_error_line(run_cli(args, capsys))
    assert "schema 99" in line and str(store) in line, line
    assert "re-ingest" in line or "version that wrote it" in line, line  # the fix
    assert whole_tree(store) == snapshot
    assert not out.exists()
