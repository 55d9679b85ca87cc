"""Bad inputs across every verb: each exits non-zero with one line on stderr, and the store's
bytes (every file, hashed) stay as they were.

The CLI runs in-process (``tgo_app.cli.main(argv)``), so ~50 cases cost
seconds, not an interpreter start each. One case runs the real console script to check the
same holds in a fresh process.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from tests.support import TINY_VIT, TINY_VIT_SPEC, save_checkpoints, tiny_vit
from tgo_app.cli import main
from tgo_store import ingest, open_store
from tgo_store.store.record_keys import CREATING

DATA = "synthetic:64"
NO_GPU = not torch.cuda.is_available()


def ingest_args(ckpt: str, store: str, *extra: str) -> list[str]:
    args = ["ingest", "--model", TINY_VIT_SPEC, "--checkpoints", ckpt, "--data", DATA, "--store", store,
            "--batch-size", "32", "--samples-per-block", "32", "--device", "cpu", "--quiet"]
    for key, value in TINY_VIT.items():
        args += ["--model-kwargs", f"{key}={value}"]
    return [*args, *extra]


def replace(args: list[str], option: str, value: str) -> list[str]:
    args = list(args)
    args[args.index(option) + 1] = value
    return args


def hashes(root: Path) -> dict[str, str]:
    """sha256 of every file under the store's folder, and of its lock file beside it."""
    files = [p for p in sorted(root.parent.rglob("*")) if p.is_file() and (root in p.parents or p.name == root.name + ".lock")]
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("bad")
    ckpts = save_checkpoints(root / "ckpt", [0])
    torch.save(torch.load(ckpts[0])["model"], ckpts[0])  # weights only: the step comes from the file name
    store = root / "stores" / "store.zarr"
    ingest(str(store), model_spec=TINY_VIT_SPEC, model_kwargs=dict(TINY_VIT), checkpoints=ckpts, data_spec=DATA,
           batch_size=32, samples_per_block=32, device="cpu", progress=False)
    files = root / "files"
    files.mkdir()
    (files / "text.npy").write_text("not an array\n")
    (files / "regular").write_text("x")
    torch.save({"epoch": 3, "note": "no weights"}, files / "no_tensors.pth")
    torch.save(tiny_vit(embed_dim=24).state_dict(), files / "other_arch.pth")
    nan = tiny_vit().state_dict()
    nan["blocks.1.mlp.fc2.bias"][:] = float("nan")
    torch.save(nan, files / "step_7.pth")
    big = {k: v * 300 if v.is_floating_point() else v for k, v in tiny_vit().state_dict().items()}
    torch.save(big, files / "step_8.pth")
    (files / "corrupt.pth").write_bytes(Path(ckpts[0]).read_bytes()[:300])
    (files / "empty_images").mkdir()
    folders = root / "folders"  # folders passed as one checkpoint (issue 21): none is a model folder
    (folders / "empty").mkdir(parents=True)
    save_checkpoints(folders / "series", [0, 100, 200])
    trainer = folders / "run" / "checkpoint-7"  # a Trainer checkpoint whose weights were not saved
    trainer.mkdir(parents=True)
    torch.save({"state": {}}, trainer / "optimizer.pt")
    (trainer / "trainer_state.json").write_text('{"global_step": 7}')
    (folders / "images").mkdir()
    for i in range(3):
        (folders / "images" / f"{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    shutil.copy(ckpts[0], files / "step_3.pth")  # the store's weights under another step (a moved file is resumed)
    foreign = root / "foreign" / "other.zarr"  # Zarr groups tgo did not write, and a folder of other files
    xr.Dataset({"temperature": (("time", "x"), np.zeros((4, 3)))}).to_zarr(foreign, zarr_format=3)
    foreign_v2 = root / "foreign" / "other_v2.zarr"
    xr.Dataset({"temperature": (("time",), np.arange(5.0))}).to_zarr(foreign_v2, zarr_format=2)
    plain = root / "foreign" / "notes"
    plain.mkdir()
    (plain / "notes.txt").write_text("mine")
    corrupt = root / "corrupt.zarr"
    shutil.copytree(store, corrupt)
    (corrupt / "zarr.json").write_text("{ not json")
    half = root / "half.zarr"
    half.mkdir()
    (half / "_tgo").mkdir()
    (half / CREATING).write_text('{"state": "creating"}')
    (half / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group", "attributes": {}}')
    sweeps = root / "sweeps"
    sweeps.mkdir()
    base = (f'[model]\nspec = "{TINY_VIT_SPEC}"\n[checkpoints]\npaths = "{ckpts[0]}"\n[data]\nspec = "{DATA}"\n'
            f'[store]\nurl = "{store}"\n')
    for name, extra in {"batch": 'batch_size = "abc"\n', "layers": 'layers = "0-3"\n', "spb": "samples_per_block = 0\n",
                        "retries": '[run]\nretries = true\n', "same": f'[analysis]\nout = "{store}/"\n',
                        "fit": f'[analysis]\nout = "{root}/m.zarr"\nfit_range = [100, 11]\n',
                        "kwargs": '[model.kwargs]\n'}.items():
        text = base + extra if name != "kwargs" else base.replace("[model]\n", '[model]\nkwargs = "img_size=16"\n')
        (sweeps / f"{name}.toml").write_text(text)
    (sweeps / "broken.toml").write_text("[model\nspec = 1")
    return {"root": root, "ckpt": ckpts[0], "store": store, "files": files, "corrupt": corrupt, "half": half,
            "sweeps": sweeps, "folders": folders, "foreign": foreign, "foreign_v2": foreign_v2, "plain": plain}


def _cases() -> dict[str, Callable[[dict], list[str]]]:
    S = lambda e: str(e["store"])  # noqa: E731
    F = lambda e, name: str(e["files"] / name)  # noqa: E731
    ING = lambda e, *extra: ingest_args(e["ckpt"], S(e), *extra)  # noqa: E731
    cases: dict[str, Callable[[dict], list[str]]] = {
        # ingest into the existing store: every refusal leaves it byte for byte
        "ingest-checkpoints-directory": lambda e: replace(ING(e), "--checkpoints", str(e["files"])),
        "ingest-checkpoints-empty-folder": lambda e: replace(ING(e), "--checkpoints", str(e["folders"] / "empty")),
        "ingest-checkpoints-folder-of-weight-files": lambda e: replace(ING(e), "--checkpoints",
                                                                       str(e["folders"] / "series")),
        "ingest-checkpoints-trainer-folder-without-weights": lambda e: replace(
            ING(e), "--checkpoints", str(e["folders"] / "run" / "checkpoint-7")),
        "ingest-checkpoints-folder-of-checkpoint-folders": lambda e: replace(ING(e), "--checkpoints",
                                                                             str(e["folders"] / "run")),
        "ingest-checkpoints-folder-of-images": lambda e: replace(ING(e), "--checkpoints", str(e["folders"] / "images")),
        "ingest-duplicate-weights-of-a-stored-checkpoint": lambda e: replace(ING(e), "--checkpoints", F(e, "step_3.pth")),
        "ingest-into-a-foreign-zarr-group": lambda e: replace(ING(e), "--store", str(e["foreign"])),
        "ingest-into-a-foreign-zarr-v2-group": lambda e: replace(ING(e), "--store", str(e["foreign_v2"])),
        "ingest-into-a-folder-of-other-files": lambda e: replace(ING(e), "--store", str(e["plain"])),
        "ingest-device-tpu": lambda e: replace(ING(e), "--device", "tpu"),
        "ingest-device-bogus": lambda e: replace(ING(e), "--device", "gpu0"),
        "ingest-model-kwargs-rejected": lambda e: ING(e, "--model-kwargs", "bogus_option=1"),
        "ingest-model-kwargs-bad-value": lambda e: ING(e, "--model-kwargs", "depth=abc"),
        "ingest-model-kwargs-bad-json": lambda e: ING(e, "--model-kwargs", "{bad json"),
        "ingest-model-kwargs-no-equals": lambda e: ING(e, "--model-kwargs", "depth"),
        "ingest-text-file-named-npy": lambda e: replace(ING(e), "--data", F(e, "text.npy")),
        "ingest-synthetic-negative": lambda e: replace(ING(e), "--data", "synthetic:-5"),
        "ingest-synthetic-not-a-number": lambda e: replace(ING(e), "--data", "synthetic:abc"),
        "ingest-empty-image-folder": lambda e: replace(ING(e), "--data", F(e, "empty_images")),
        "ingest-missing-data-file": lambda e: replace(ING(e), "--data", F(e, "nope.npz")),
        "ingest-store-unknown-protocol": lambda e: replace(ING(e), "--store", "foo://bucket/x.zarr"),
        "ingest-store-backend-missing": lambda e: replace(ING(e), "--store", "gs://bucket/x.zarr"),
        "ingest-store-regular-file": lambda e: replace(ING(e), "--store", F(e, "regular")),
        "ingest-store-inside-regular-file": lambda e: replace(ING(e), "--store", F(e, "regular") + "/s.zarr"),
        "ingest-no-tensors": lambda e: replace(ING(e), "--checkpoints", F(e, "no_tensors.pth")),
        "ingest-other-architecture": lambda e: replace(ING(e), "--checkpoints", F(e, "other_arch.pth")),
        "ingest-nan-weights": lambda e: replace(ING(e), "--checkpoints", F(e, "step_7.pth")),
        "ingest-float16-overflow": lambda e: replace(ING(e), "--checkpoints", F(e, "step_8.pth")),
        "ingest-missing-checkpoint": lambda e: replace(ING(e), "--checkpoints", F(e, "nope.pth")),
        "ingest-glob-matches-nothing": lambda e: replace(ING(e), "--checkpoints", F(e, "*.safetensors")),
        "ingest-corrupt-checkpoint": lambda e: replace(ING(e), "--checkpoints", F(e, "corrupt.pth")),
        "ingest-unknown-model": lambda e: replace(ING(e), "--model", "vit_tinny_patch16_224"),
        "ingest-bad-factory": lambda e: replace(ING(e), "--model", "no_such_pkg.mod:make"),
        "ingest-layers-out-of-range": lambda e: ING(e, "--layers", "0-9"),
        "ingest-tokens-out-of-range": lambda e: ING(e, "--tokens", "0,99"),
        "ingest-layers-unreadable": lambda e: ING(e, "--layers", "a-b"),
        "ingest-dtype-unknown": lambda e: ING(e, "--dtype", "float64"),
        "ingest-dtype-differs-from-store": lambda e: ING(e, "--dtype", "float32"),
        "ingest-precision-unknown": lambda e: ING(e, "--precision", "float8"),
        "ingest-batch-size-zero": lambda e: replace(ING(e), "--batch-size", "0"),
        "ingest-batch-size-not-int": lambda e: replace(ING(e), "--batch-size", "abc"),
        "ingest-missing-store-option": lambda e: ING(e)[:ING(e).index("--store")] + ING(e)[ING(e).index("--store") + 2:],
        # info
        "info-corrupt-zarr-json": lambda e: ["info", str(e["corrupt"])],
        "info-missing-store": lambda e: ["info", str(e["root"] / "nope.zarr")],
        "info-regular-file": lambda e: ["info", F(e, "regular")],
        "info-unknown-protocol": lambda e: ["info", "foo://x.zarr"],
        "info-half-made-store": lambda e: ["info", str(e["half"])],
        "info-no-argument": lambda e: ["info"],
        # analyze
        "analyze-out-is-input": lambda e: ["analyze", S(e), "--out", S(e)],
        "analyze-out-is-input-overwrite": lambda e: ["analyze", S(e), "--out", S(e) + "/", "--overwrite"],
        "analyze-out-is-input-other-spelling": lambda e: ["analyze", S(e), "--out",
                                                          str(e["store"].parent / ".." / "stores" / "store.zarr")],
        "analyze-out-is-input-file-url": lambda e: ["analyze", S(e), "--out", "file://" + S(e), "--overwrite"],
        "analyze-out-unknown-protocol": lambda e: ["analyze", S(e), "--out", "foo://m.zarr"],
        "analyze-missing-store": lambda e: ["analyze", str(e["root"] / "nope.zarr"), "--out", str(e["root"] / "m.zarr")],
        "analyze-fit-range-unreadable": lambda e: ["analyze", S(e), "--out", str(e["root"] / "m.zarr"), "--fit-range", "abc"],
        "analyze-unknown-metric": lambda e: ["analyze", S(e), "--out", str(e["root"] / "m.zarr"), "--metrics", "bogus"],
        "analyze-device-unknown": lambda e: ["analyze", S(e), "--out", str(e["root"] / "m.zarr"), "--device", "tpu"],
        # report
        "report-on-activation-store": lambda e: ["report", S(e), "--out", str(e["root"] / "page")],
        "report-missing-results": lambda e: ["report", str(e["root"] / "nope.zarr"), "--out", str(e["root"] / "page")],
        # demo
        "demo-out-is-a-file": lambda e: ["demo", "--out", F(e, "regular"), "--quick", "--quiet"],
        # sweep
        "sweep-missing-file": lambda e: ["sweep", str(e["sweeps"] / "nope.toml")],
        "sweep-invalid-toml": lambda e: ["sweep", str(e["sweeps"] / "broken.toml")],
        "sweep-workers-zero": lambda e: ["sweep", str(e["sweeps"] / "batch.toml"), "--workers", "0"],
        "sweep-file-is-a-directory": lambda e: ["sweep", str(e["sweeps"])],
        # export
        "export-unknown-layer": lambda e: ["export", S(e), "--layer", "9", "--out", str(e["root"] / "x")],
        "export-checkpoint-out-of-range": lambda e: ["export", S(e), "--layer", "0", "--checkpoints", "3",
                                                     "--out", str(e["root"] / "x")],
        "export-exclude-special-on-an-image-store": lambda e: ["export", S(e), "--layer", "0", "--exclude-special",
                                                               "--out", str(e["root"] / "x")],
        "export-unknown-format": lambda e: ["export", S(e), "--layer", "0", "--format", "csv",
                                            "--out", str(e["root"] / "x")],
        "export-out-is-a-file": lambda e: ["export", S(e), "--layer", "0", "--out", F(e, "regular")],
        "export-corrupt-store": lambda e: ["export", str(e["corrupt"]), "--layer", "0", "--out", str(e["root"] / "x")],
        "export-half-made-store": lambda e: ["export", str(e["half"]), "--layer", "0", "--out", str(e["root"] / "x")],
        "export-foreign-zarr-group": lambda e: ["export", str(e["foreign"]), "--layer", "0",
                                                "--out", str(e["root"] / "x")],
        "export-missing-layer-option": lambda e: ["export", S(e), "--out", str(e["root"] / "x")],
        # general
        "unknown-verb": lambda e: ["injest"],
    }
    for name in ("batch", "layers", "spb", "retries", "same", "fit", "kwargs"):
        cases[f"sweep-wrong-type-{name}"] = lambda e, n=name: ["sweep", str(e["sweeps"] / f"{n}.toml")]
    if NO_GPU:
        cases["ingest-device-cuda-without-gpu"] = lambda e: replace(ING(e), "--device", "cuda")
        cases["ingest-device-cuda-index-without-gpu"] = lambda e: replace(ING(e), "--device", "cuda:1")
        cases["analyze-device-cuda-without-gpu"] = lambda e: ["analyze", S(e), "--out", str(e["root"] / "m.zarr"),
                                                              "--device", "cuda"]
    return cases


CASES = _cases()
MESSAGES = {  # what the one line must say, where a case is about the message (issue 21)
    "ingest-checkpoints-folder-of-weight-files": "/series/*.pth'",
    "ingest-checkpoints-empty-folder": "is empty",
    "ingest-checkpoints-trainer-folder-without-weights": "no model weights",
    "ingest-checkpoints-folder-of-checkpoint-folders": "/run/checkpoint-*'",
    "ingest-checkpoints-folder-of-images": "0.png",
    "ingest-duplicate-weights-of-a-stored-checkpoint": ("step_3.pth (step 3)", "ckpt/step_0.pth (step 0)",
                                                         "--allow-duplicate-weights"),
    "ingest-into-a-foreign-zarr-group": "temperature (4, 3)",
    "ingest-into-a-foreign-zarr-v2-group": "choose another --store URL",
    "ingest-into-a-folder-of-other-files": "notes.txt",
    "export-unknown-layer": "layer 9 is not in",
    "export-out-is-a-file": "already exists",
}
STORES = ("store", "corrupt", "half", "foreign", "foreign_v2", "plain")


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_and_leaves_the_store(case, env, capsys) -> None:
    before = {name: hashes(env[name]) for name in STORES}
    with pytest.raises(SystemExit) as exit_info:
        main(CASES[case](env))
    out, err = capsys.readouterr()
    assert exit_info.value.code not in (0, None), (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tgo: error:"), err
    assert "bug in tgo" not in lines[0], lines[0]
    wanted = MESSAGES.get(case, ())
    assert all(part in lines[0] for part in ((wanted,) if isinstance(wanted, str) else wanted)), lines[0]
    assert {name: hashes(env[name]) for name in before} == before
    assert all(not (env[name].parent / "_tgo").exists() and not (env[name] / "_tgo").exists()
               for name in ("foreign", "foreign_v2", "plain")), "no tgo folder is made in what tgo did not write"


def test_enough_cases_across_every_verb() -> None:
    verbs = {name.split("-")[0] for name in CASES}
    assert len(CASES) >= 40 and {"ingest", "info", "analyze", "report", "demo", "sweep", "export"} <= verbs


def test_a_bug_is_one_line_without_debug_and_a_traceback_with_it(env, capsys, monkeypatch) -> None:
    import tgo_store.store.info

    def broken(*_a, **_k):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(tgo_store.store.info, "store_info", broken)
    monkeypatch.delenv("TGO_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        main(["info", str(env["store"])])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 1 and len(err) == 1 and "--debug" in err[0] and "ZeroDivisionError" in err[0]
    with pytest.raises(ZeroDivisionError):
        main(["--debug", "info", str(env["store"])])
    monkeypatch.delenv("TGO_DEBUG", raising=False)


def test_the_console_script_in_a_fresh_process(env) -> None:
    before = hashes(env["store"])
    done = subprocess.run([sys.executable, "-m", "tgo_app.cli", "analyze", str(env["store"]),
                           "--out", str(env["store"]), "--overwrite"], capture_output=True, text=True)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "input store" in done.stderr
    assert hashes(env["store"]) == before


def test_duplicate_weights_are_recorded_with_the_flag(env, tmp_path, capsys) -> None:
    """`--allow-duplicate-weights` records the stored weights again under their other name."""
    store = tmp_path / "dup.zarr"
    shutil.copytree(env["store"], store)
    main(ingest_args(str(env["files"] / "step_3.pth"), str(store), "--allow-duplicate-weights"))
    ds = open_store(str(store))
    assert ds.sizes["checkpoint"] == 2 and len(set(ds.checkpoint_sha256.values)) == 1
    np.testing.assert_array_equal(ds.activations[0].values, ds.activations[1].values)
    assert "2 blocks written, 0 already there" in capsys.readouterr().out  # only the new slot
