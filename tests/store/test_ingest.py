"""Ingest: schema, resume after kill -9, appending, refusals, concurrency, fsspec URLs, recorder."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

from tests.support import DATA, cli_args, ingest_kwargs, leftover_temporaries, run_cli, tiny_vit
from tgo_store import Recorder, ingest, open_store, store_info
from tgo_store.errors import TgoError

TGO = [sys.executable, "-m", "tgo_app.cli"]


def tgo(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([*TGO, *args], capture_output=True, text=True, **kwargs)


def tree_bytes(path: Path) -> dict[str, bytes]:
    """Every data file of the store (commit records aside, they hold timestamps)."""
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file() and "_tgo" not in p.parts}


@pytest.fixture(scope="module")
def reference_store(checkpoints, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ref") / "store.zarr"
    ingest(str(path), **ingest_kwargs(checkpoints))
    return path


def test_store_opens_with_plain_xarray_and_matches_spec(reference_store, checkpoints) -> None:
    code = textwrap.dedent(f"""
        import sys, json, xarray as xr
        ds = xr.open_zarr({str(reference_store)!r})
        assert not any(m.startswith("tgo") for m in sys.modules), "tgo was imported"
        act = ds.activations
        print(json.dumps({{"dims": list(act.dims), "dtype": str(act.dtype), "coords": sorted(ds.coords),
                          "attrs": sorted(ds.attrs), "steps": ds.checkpoint.values.tolist(),
                          "kinds": [str(k) for k in ds.token_kind.values[:2]], "shape": list(act.shape)}}))
    """)
    out = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert out["dims"] == ["checkpoint", "layer", "sample", "token", "feature"]
    assert out["dtype"] == "float16" and out["steps"] == [0, 50, 200] and out["kinds"] == ["cls", "patch"]
    assert {"checkpoint_path", "checkpoint_sha256", "layer_name", "label", "token_kind", "token_row",
            "token_col"} <= set(out["coords"])
    assert {"tgo_schema", "model", "dataset", "created_by"} <= set(out["attrs"])
    assert out["shape"] == [3, 3, 359, 17, 16]


def test_stored_activations_equal_a_direct_forward_pass(reference_store, checkpoints) -> None:
    from tgo_store.capture.checkpoints import load_checkpoint_into, resolve_checkpoints
    from tgo_store.sources import open_source

    ds = open_store(str(reference_store))
    model = tiny_vit()
    load_checkpoint_into(model, resolve_checkpoints(checkpoints[1])[0])
    batch = next(open_source(DATA, image_size=16, in_chans=1, mean=(0.5,), std=(0.5,)).batches(10, start=70))
    with torch.no_grad():
        final = model.forward_intermediates(torch.from_numpy(batch.inputs), return_prefix_tokens=True,
                                            output_fmt="NLC", intermediates_only=True)[-1]
    expected = torch.cat([final[1], final[0]], dim=1).numpy().astype(np.float16)
    stored = ds.activations.isel(checkpoint=1, layer=-1, sample=slice(70, 80)).values
    np.testing.assert_array_equal(stored, expected)
    assert list(ds.sample.values[70:80]) == list(batch.sample_ids)


def test_rerun_writes_nothing_and_info_reports_complete(reference_store, checkpoints) -> None:
    summary = ingest(str(reference_store), **ingest_kwargs(checkpoints))
    assert summary.blocks_written == 0 and summary.blocks_skipped == 3 * 6
    info = store_info(str(reference_store))
    assert info.complete and [c["step"] for c in info.checkpoints] == [0, 50, 200]
    assert info.shards == (1, 1, 64, 17, 16) and info.bytes_stored >= info.bytes_logical
    done = tgo("info", str(reference_store))
    assert done.returncode == 0 and "complete" in done.stdout


@pytest.mark.slow
def test_kill_minus_9_then_resume_is_bit_identical(reference_store, checkpoints, tmp_path) -> None:
    store = tmp_path / "killed.zarr"
    proc = subprocess.Popen([*TGO, *cli_args(checkpoints[0].rsplit("/", 1)[0] + "/*.pth", str(store))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((store / "_tgo" / "blocks").rglob("*.json"))) < 4:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = len(list((store / "_tgo" / "blocks").rglob("*.json")))
    assert 0 < written < 18, "the kill should land mid-ingest"
    done = tgo(*cli_args(checkpoints[0].rsplit("/", 1)[0] + "/*.pth", str(store)))
    assert done.returncode == 0, done.stderr
    assert f"{18 - written} blocks written" in done.stdout or f"{18 - written + 1} blocks written" in done.stdout
    assert tree_bytes(store) == tree_bytes(reference_store)
    assert leftover_temporaries(store) == []  # deterministic torn kills: tests/reliability/test_kill_anywhere.py


def test_a_torn_block_without_commit_is_rewritten(reference_store, checkpoints, tmp_path) -> None:
    store = tmp_path / "torn.zarr"
    shutil.copytree(reference_store, store)
    shard = next(p for p in sorted((store / "activations").rglob("*")) if p.is_file() and p.name != "zarr.json")
    shard.write_bytes(shard.read_bytes()[:100])
    commits = sorted((store / "_tgo" / "blocks").rglob("*.json"))
    commits[0].unlink()
    summary = ingest(str(store), **ingest_kwargs(checkpoints))
    assert summary.blocks_written == 1
    assert tree_bytes(store) == tree_bytes(reference_store)


def test_append_a_checkpoint_later(checkpoints, tmp_path) -> None:
    store = str(tmp_path / "grow.zarr")
    ingest(store, **ingest_kwargs(checkpoints[:2]))
    before = open_store(store).activations.isel(checkpoint=slice(0, 2)).values
    ingest(store, **ingest_kwargs(checkpoints))
    ds = open_store(store)
    assert list(ds.checkpoint.values) == [0, 50, 200]
    np.testing.assert_array_equal(ds.activations.isel(checkpoint=slice(0, 2)).values, before)


def test_changed_checkpoint_dataset_or_model_are_refused(reference_store, checkpoints, tmp_path) -> None:
    store = tmp_path / "guard.zarr"
    shutil.copytree(reference_store, store)
    snapshot = tree_bytes(store)
    changed = tmp_path / "ck"
    changed.mkdir()
    for path in checkpoints:
        shutil.copy(path, changed)
    state = torch.load(changed / "step_50.pth", weights_only=True)
    state["model"]["head.bias"] += 1
    torch.save(state, changed / "step_50.pth")
    moved = [str(changed / Path(p).name) for p in checkpoints]
    from tgo_store.capture.checkpoints import CheckpointRef, resolve_checkpoints
    from tgo_store.ingestion import prepare_store

    with pytest.raises(TgoError, match="another dataset"):
        ingest(str(store), **ingest_kwargs(checkpoints, data_spec="sklearn:digits:train"))
    with pytest.raises(TgoError, match="another model configuration"):
        ingest(str(store), **ingest_kwargs(checkpoints, model_kwargs={**ingest_kwargs(checkpoints)["model_kwargs"], "depth": 3}))
    refs = resolve_checkpoints(moved)
    same_paths = [CheckpointRef(url=c, step=r.step, sha256=r.sha256) for c, r in zip(checkpoints, refs, strict=True)]
    with pytest.raises(TgoError, match="changed since it was ingested"):
        prepare_store(str(store), model_spec=ingest_kwargs(checkpoints)["model_spec"], checkpoints=same_paths,
                          data_spec=DATA, model_kwargs=ingest_kwargs(checkpoints)["model_kwargs"], batch_size=32,
                          samples_per_block=64)
    group = zarr.open_group(str(store), mode="r+")
    group.attrs["tgo_schema"] = 99
    with pytest.raises(TgoError, match="schema 99"):
        ingest(str(store), **ingest_kwargs(checkpoints))
    group.attrs["tgo_schema"] = 1
    assert tree_bytes(store) == snapshot


def test_bf16_compute_precision_is_recorded_and_never_mixed(reference_store, checkpoints, tmp_path) -> None:
    """A model run in bfloat16 gives close but different activations: its store says so, and
    a float32 run cannot append to it (nor a bfloat16 run to a float32 store)."""
    store = str(tmp_path / "bf16.zarr")
    ingest(store, **ingest_kwargs(checkpoints[1], precision="bfloat16"))
    ds, ref = open_store(store), open_store(str(reference_store))
    assert ds.attrs["model"]["precision"] == "bfloat16" and "precision" not in ref.attrs["model"]
    low = ds.activations.isel(checkpoint=0).values.astype(np.float32)
    high = ref.activations.isel(checkpoint=1).values.astype(np.float32)
    assert not np.array_equal(low, high)
    scale = np.abs(high).max(axis=(1, 2, 3), keepdims=True)
    np.testing.assert_allclose(low / scale, high / scale, atol=0.05)  # bf16 keeps 8 bits of mantissa
    with pytest.raises(TgoError, match="another model configuration"):
        ingest(store, **ingest_kwargs(checkpoints[1]))
    with pytest.raises(TgoError, match="another model configuration"):
        ingest(str(reference_store), **ingest_kwargs(checkpoints, precision="bfloat16"))
    with pytest.raises(TgoError, match="unknown --precision"):
        ingest(store, **ingest_kwargs(checkpoints[1], precision="int8"))


@pytest.mark.slow
def test_two_processes_ingesting_different_checkpoints(checkpoints, reference_store, tmp_path) -> None:
    store = str(tmp_path / "shared.zarr")
    procs = [subprocess.Popen([*TGO, *cli_args(path, store)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for path in (checkpoints[0], checkpoints[2])]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    ds = open_store(store)
    ref = open_store(str(reference_store))
    assert sorted(ds.checkpoint.values) == [0, 200]
    for step in (0, 200):
        np.testing.assert_array_equal(ds.activations.sel(checkpoint=step).values,
                                      ref.activations.sel(checkpoint=step).values)
    assert store_info(store).complete


def test_memory_url_store(checkpoints) -> None:
    url = "memory://tgo-test/store.zarr"
    ingest(url, **ingest_kwargs(checkpoints[:1]))
    ds = open_store(url)
    assert ds.activations.shape == (1, 3, 359, 17, 16)
    assert store_info(url).complete


def test_file_url_store_equals_the_plain_path_store(checkpoints, reference_store, tmp_path) -> None:
    url = f"file://{tmp_path}/file-url.zarr"
    ingest(url, **ingest_kwargs(checkpoints))
    assert tree_bytes(tmp_path / "file-url.zarr") == tree_bytes(reference_store)
    assert store_info(url).complete and open_store(url).activations.shape == (3, 3, 359, 17, 16)


@pytest.fixture(scope="module")
def s3_server():
    moto_server = pytest.importorskip("moto.server")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_ENDPOINT_URL": endpoint,
           "AWS_DEFAULT_REGION": "us-east-1"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    import boto3

    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="tgo")
    yield endpoint
    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    server.stop()


def test_s3_store_against_a_loopback_server(s3_server, checkpoints, reference_store) -> None:
    url = "s3://tgo/exp1.zarr"
    options = {"client_kwargs": {"endpoint_url": s3_server}, "key": "testing", "secret": "testing"}
    ingest(url, **ingest_kwargs(checkpoints[:2]), storage_options=options)
    ds = open_store(url, storage_options=options)
    np.testing.assert_array_equal(ds.activations.values, open_store(str(reference_store)).activations.isel(checkpoint=slice(0, 2)).values)
    assert store_info(url, storage_options=options).complete


def test_recorder_captures_live_steps_and_restores_mode(tmp_path) -> None:
    torch.manual_seed(0)
    model = tiny_vit().train()
    probe = torch.randn(20, 1, 16, 16)
    rec = Recorder(str(tmp_path / "live.zarr"), model, probe, labels=list(range(20)), batch_size=8)
    rec.capture(step=0)
    with torch.no_grad():
        model.head.bias.add_(1.0)
        model.blocks[0].mlp.fc1.weight.mul_(1.5)
    rec.capture(step=10)
    assert model.training
    ds = open_store(str(tmp_path / "live.zarr"))
    assert list(ds.checkpoint.values) == [0, 10] and ds.activations.shape == (2, 3, 20, 17, 16)
    model.eval()
    with torch.no_grad():
        expected = model.blocks[0](model.norm_pre(model._pos_embed(model.patch_embed(probe))))
    np.testing.assert_allclose(ds.activations.isel(checkpoint=1, layer=1).values, expected.numpy(), rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize(("case", "message"), [
    ("missing", "does not exist"),
    ("corrupt", "corrupt or truncated"),
    ("architecture", "another architecture"),
    ("model", "unknown timm model"),
    ("layers", "out of range"),
    ("tokens", "out of range"),
    ("data", "holds no images"),
    ("unwritable", "cannot write"),
    ("nan", "NaN/Inf"),
])
def test_cli_bad_input_one_line_error_and_store_unchanged(case, message, reference_store, checkpoints, tmp_path,
                                                         capsys) -> None:
    store = tmp_path / "s.zarr"
    shutil.copytree(reference_store, store)
    snapshot = tree_bytes(store)
    ckpt = checkpoints[0].rsplit("/", 1)[0] + "/*.pth"
    args = cli_args(ckpt, str(store))
    if case == "missing":
        args = cli_args(str(tmp_path / "nope.pth"), str(store))
    elif case == "corrupt":
        (tmp_path / "bad.pth").write_bytes(Path(checkpoints[0]).read_bytes()[:500])
        args = cli_args(str(tmp_path / "bad.pth"), str(store))
    elif case == "architecture":
        torch.save(tiny_vit(embed_dim=24).state_dict(), tmp_path / "other.pth")
        args = [a if a != "embed_dim=16" else "embed_dim=16" for a in cli_args(str(tmp_path / "other.pth"), str(tmp_path / "new.zarr"))]
    elif case == "model":
        args[args.index("--model") + 1] = "vit_tinny_patch16_224"
    elif case == "layers":
        args += ["--layers", "0-7"]
    elif case == "tokens":
        args += ["--tokens", "0,99"]
    elif case == "data":
        (tmp_path / "empty").mkdir()
        args[args.index("--data") + 1] = str(tmp_path / "empty")
    elif case == "unwritable":
        (tmp_path / "file").write_text("x")
        args[args.index("--store") + 1] = str(tmp_path / "file" / "s.zarr")
    elif case == "nan":
        state = tiny_vit().state_dict()
        state["blocks.1.mlp.fc2.bias"][:] = float("nan")
        torch.save(state, tmp_path / "step_7.pth")
        args = cli_args(str(tmp_path / "step_7.pth"), str(tmp_path / "nan.zarr"))
    done = run_cli(args, capsys)
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tgo: error:") and message in lines[0], done.stderr
    assert tree_bytes(store) == snapshot
