"""Recording text models: hidden states, per-position coords, resume, checkpoints, refusals."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from tests.text.tiny_hf import build, perturb, save
from tgo_store import Recorder, ingest, open_store
from tgo_store.capture.models import build_model, input_config, model_description
from tgo_store.capturers import make_capturer
from tgo_store.errors import TgoError
from tgo_store.sources import TokenBatch, open_source
from tgo_store.store import schema as S

TGO = [sys.executable, "-m", "tgo_app.cli"]
KW = {"batch_size": 8, "samples_per_block": 16, "device": "cpu", "progress": False, "dtype": "float32"}
TEXT = {"seq_len": 24, "samples": 40}


def short_docs(folder: Path) -> str:
    """A .jsonl corpus of documents of 1 to 6 words (some longer than a sequence), for padding."""
    words = ["the", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog", "while", "Python", "reads", "every", "line"]
    path = folder / "short.jsonl"
    path.write_text("\n".join(json.dumps({"text": " ".join(words[i % 5:i % 5 + 1 + i % 6] * (1 + 4 * (i % 7 == 0)))})
                                     for i in range(30)))
    return f"text:{path}"


def reference_states(model, batch: TokenBatch) -> tuple:
    with torch.no_grad():
        out = model(input_ids=torch.as_tensor(batch.ids), attention_mask=torch.as_tensor(batch.attention_mask).long(),
                    output_hidden_states=True)
    return out.hidden_states


@pytest.mark.parametrize("kind", ["bert", "llama", "gpt2"])
@pytest.mark.parametrize("padding", [None, "left", "right"])
def test_capture_equals_the_models_own_hidden_states(tiny_dirs, kind, padding, tmp_path) -> None:
    model = build_model(f"hf:{tiny_dirs[kind]}")
    data = "text:pydoc" if padding is None else short_docs(tmp_path)
    source = open_source(data, **input_config(model), seq_len=20, samples=12, padding=padding)
    batch = next(source.batches(12)).inputs
    capturer = make_capturer(model, example=batch)
    got = capturer(capturer.prepare(batch, "cpu", torch.float32))
    expected = reference_states(model, batch)
    assert got.shape == (3, 12, 20, 32) and len(expected) == 3
    mask = torch.as_tensor(batch.attention_mask)
    for layer, ref in enumerate(expected):
        torch.testing.assert_close(got[layer][mask], ref[mask], rtol=0, atol=0)
        assert (got[layer][~mask] == 0).all()
    if padding is None:
        assert mask.all()
    else:
        side = batch.attention_mask[:, -1] if padding == "right" else batch.attention_mask[:, 0]
        assert not side.all(), f"{padding} padding should leave pads on that side"
    names = {"bert": "embeddings", "llama": "model.embed_tokens", "gpt2": "transformer.wte"}
    assert capturer.layer_names[0] == names[kind] and capturer.layer_names[-1].endswith(".1")
    facts = model_description(model, "hf:x")["transformers"]
    assert facts["final_norm_applied"] == facts["is_decoder"] == (kind != "bert") and facts["hidden_states"] == 3


def test_the_last_hidden_state_of_a_decoder_has_the_final_norm(tiny_dirs) -> None:
    model = build_model(f"hf:{tiny_dirs['llama']}")
    ids = torch.arange(4, 20)[None]
    seen = {}
    handle = model.model.layers[-1].register_forward_hook(lambda _m, _i, out: seen.__setitem__("block", out))
    with torch.no_grad():
        out = model.model(input_ids=ids, output_hidden_states=True)
    handle.remove()
    block = seen["block"][0] if isinstance(seen["block"], tuple) else seen["block"]
    torch.testing.assert_close(out.hidden_states[-1], model.model.norm(block))
    assert not torch.allclose(out.hidden_states[-1], block)


@pytest.fixture(scope="module")
def llama_store(tiny_dirs, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("text") / "llama.zarr"
    ingest(str(path), model_spec=f"hf:{tiny_dirs['llama']}", checkpoints=None, data_spec="text:pydoc",
           data_options=TEXT, **KW)
    return path


def test_text_store_schema_coords_and_values(llama_store, tiny_dirs) -> None:
    ds = xr.open_zarr(str(llama_store))
    act = ds[S.ACTIVATIONS]
    assert act.shape == (1, 3, 40, 24, 32) and ds.attrs[S.ATTR_SCHEMA] == S.TEXT_SCHEMA_VERSION
    assert ds[S.TOKEN_ID].dims == (S.SAMPLE, S.TOKEN) and ds[S.TOKEN_ID].dtype == np.int32
    assert ds[S.ATTENTION_MASK].dtype == bool and ds[S.TOKEN_SPECIAL].dtype == bool
    assert {S.TOKEN_ID, S.ATTENTION_MASK, S.TOKEN_SPECIAL} <= set(ds.coords)
    assert set(ds[S.TOKEN_KIND].values) == {"text"} and (ds[S.TOKEN_ROW] == -1).all() and (ds[S.TOKEN_COL] == -1).all()
    assert ds[S.TOKEN_SPECIAL].values[:, 0].all(), "every packed sequence starts with BOS"
    assert ds.attrs[S.ATTR_FINAL_NORM_LAYERS] == [int(ds[S.LAYER].values[-1])]  # the decoder's last state
    tok = ds.attrs[S.ATTR_TOKENIZER]
    assert tok["vocab_size"] == 400 and len(tok["sha256"]) == 64
    text = ds.attrs[S.ATTR_TEXT]
    assert text["seq_len"] == 24 and text["packing"] and text["corpus"] == "pydoc" and text["sequences"] == 40
    counts = ds[S.VOCAB_COUNT].values
    assert counts.shape == (400,) and counts.sum() == ds[S.ATTENTION_MASK].values.sum()
    np.testing.assert_array_equal(counts, np.bincount(ds[S.TOKEN_ID].values.ravel(), minlength=400))
    assert ds.checkpoint_path.values[0] == str(tiny_dirs["llama"])
    model = build_model(f"hf:{tiny_dirs['llama']}")
    source = open_source("text:pydoc", **input_config(model), **TEXT)
    batch = next(source.batches(40)).inputs
    np.testing.assert_array_equal(ds[S.TOKEN_ID].values, batch.ids)
    expected = reference_states(model, batch)
    for layer in range(3):
        np.testing.assert_array_equal(act.isel(checkpoint=0, layer=layer).values, expected[layer].numpy())


def test_slice_by_token_identity_with_plain_xarray(llama_store, tiny_dirs) -> None:
    ds = xr.open_zarr(str(llama_store))
    the = int(np.bincount(ds[S.TOKEN_ID].values.ravel()).argmax())
    layer1 = ds[S.ACTIVATIONS].isel(checkpoint=0, layer=1)
    picked = layer1.where(ds[S.TOKEN_ID] == the).stack(pos=(S.SAMPLE, S.TOKEN)).dropna("pos", how="all")
    mask = ds[S.TOKEN_ID].values == the
    assert picked.sizes["pos"] == mask.sum() == ds[S.VOCAB_COUNT].values[the]
    np.testing.assert_array_equal(np.sort(picked.values.T, axis=0), np.sort(layer1.values[mask], axis=0))


def test_right_padding_store_marks_pads(tiny_dirs, tmp_path) -> None:
    path = tmp_path / "pad.zarr"
    ingest(str(path), model_spec=f"hf:{tiny_dirs['bert']}", checkpoints=None, data_spec=short_docs(tmp_path),
           data_options={"seq_len": 32, "padding": "right", "samples": 16}, **KW)
    ds = open_store(str(path))
    mask, ids = ds[S.ATTENTION_MASK].values, ds[S.TOKEN_ID].values
    assert not mask.all() and (ids[~mask] == -1).all() and (ids[mask] >= 0).all()
    assert (ds[S.ACTIVATIONS].values[0][:, ~mask] == 0).all()
    assert ds.attrs[S.ATTR_TEXT]["padding_side"] == "right"
    special = ds[S.TOKEN_SPECIAL].values
    assert (ids[special] != -1).all() and special[:, 0].all(), "[CLS] first"


def _tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file() and "_tgo" not in p.parts}


def _cli(model: Path, store: Path, *extra: str) -> list[str]:
    return [*TGO, "ingest", "--model", f"hf:{model}", "--data", "text:pydoc", "--seq-len", "24", "--samples", "40",
            "--store", str(store), "--batch-size", "4", "--samples-per-block", "4", "--dtype", "float32",
            "--device", "cpu", "--quiet", *extra]


@pytest.mark.slow
def test_kill_minus_9_then_cli_resume_is_bit_identical(tiny_dirs, tmp_path) -> None:
    """Reference in process; a library ingest killed inside a write mid-way (its temporary file
    written, not renamed: ``killer.die_at``); resumed by `tgo ingest --model hf: --data text:`,
    which removes the temporary."""
    from tests.reliability import killer
    from tests.support import leftover_temporaries

    reference, killed = tmp_path / "ref.zarr", tmp_path / "killed.zarr"
    options = {"model_spec": f"hf:{tiny_dirs['gpt2']}", "checkpoints": None, "data_spec": "text:pydoc",
               "data_options": TEXT, **KW, "batch_size": 4, "samples_per_block": 4}
    writes = killer.count_writes(lambda: ingest(str(reference), **options))
    k = writes - 5 * 7 + 4  # blocks write 3 deletes, 3 shards, 1 commit: the first shard write of block 5 of 10
    code = (f"from tests.reliability import killer; from tgo_store import ingest; killer.die_at({k}, torn=True); "
            f"ingest({str(killed)!r}, **{options!r})")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    written = len(list((killed / "_tgo" / "blocks").rglob("*.json")))
    assert 0 < written < 10, "the kill should land mid-ingest"
    assert leftover_temporaries(killed), "the torn write leaves its temporary file"
    again = subprocess.run(_cli(tiny_dirs["gpt2"], killed), capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert f"{10 - written} blocks written" in again.stdout
    assert _tree(killed) == _tree(reference)
    assert leftover_temporaries(killed) == []


def test_checkpoint_folders_append_and_duplicates(tiny_dirs, bpe, tmp_path) -> None:
    model = build("llama", len(bpe), seed=1)
    for step in (100, 200):
        perturb(model)
        save(model, bpe, tmp_path / "run" / f"checkpoint-{step}", step=step)
    store = tmp_path / "ck.zarr"
    args = {"model_spec": f"hf:{tmp_path / 'run' / 'checkpoint-100'}", "data_spec": "text:pydoc",
            "data_options": {"seq_len": 16, "samples": 8}, **KW}
    ingest(str(store), checkpoints=str(tmp_path / "run" / "checkpoint-100"), **args)
    ingest(str(store), checkpoints=str(tmp_path / "run" / "checkpoint-*"), **args)
    ds = open_store(str(store))
    assert list(ds.checkpoint.values) == [100, 200]
    later = build_model(f"hf:{tmp_path / 'run' / 'checkpoint-200'}")
    batch = next(open_source("text:pydoc", **input_config(later), seq_len=16, samples=8).batches(8)).inputs
    np.testing.assert_array_equal(ds.activations.isel(checkpoint=1, layer=2).values,
                                  reference_states(later, batch)[2].numpy())
    shutil.copytree(tmp_path / "run" / "checkpoint-200", tmp_path / "run" / "checkpoint-300")
    with pytest.raises(TgoError, match="identical weights"):
        ingest(str(store), checkpoints=str(tmp_path / "run" / "checkpoint-*"), **args)


@pytest.mark.parametrize(("case", "message"), [
    ("empty", "no tokens"),
    ("seq_len", "above the model's maximum"),
    ("vocab", "embedding has"),
    ("jsonl", "no string 'text' field"),
    ("changed_seq_len", "'text' setting"),
    ("changed_tokenizer", "'tokenizer' setting"),
    ("images", "records text"),
])
def test_bad_text_input_one_line_and_no_damage(case, message, llama_store, tiny_dirs, bpe, tmp_path) -> None:
    store = tmp_path / "s.zarr"
    shutil.copytree(llama_store, store)
    before = _tree(store)
    model, data, options = tiny_dirs["llama"], "text:pydoc", dict(TEXT)
    if case == "empty":
        (tmp_path / "empty.txt").write_text("   \n\n")
        data = f"text:{tmp_path / 'empty.txt'}"
    elif case == "seq_len":
        options["seq_len"] = 129
    elif case == "vocab":
        model = save(build("llama", 300), bpe, tmp_path / "small-vocab")
    elif case == "jsonl":
        (tmp_path / "c.jsonl").write_text('{"text": "hello"}\n{"body": "no text"}\n')
        data = f"text:{tmp_path / 'c.jsonl'}"
    elif case == "changed_seq_len":
        options["seq_len"] = 16
    elif case == "changed_tokenizer":
        model = tmp_path / "other-tok"
        shutil.copytree(tiny_dirs["llama"], model)
        cfg = json.loads((model / "tokenizer_config.json").read_text())
        cfg["bos_token"] = "</s>"
        (model / "tokenizer_config.json").write_text(json.dumps(cfg))
    elif case == "images":
        data = "synthetic:4"
    # the other tokenizer's folder holds the same weights: allowed here, so its tokenizer is what is refused
    extra = {"allow_duplicate_weights": True} if case == "changed_tokenizer" else {}
    with pytest.raises(TgoError, match=message) as err:
        ingest(str(store), model_spec=f"hf:{model}", checkpoints=None, data_spec=data, data_options=options, **KW,
               **extra)
    assert "\n" not in str(err.value)
    assert _tree(store) == before


def test_other_corpora_jsonl_folder_and_fsspec(tiny_dirs, tmp_path) -> None:
    import fsspec

    model = build_model(f"hf:{tiny_dirs['bert']}")
    opts = {**input_config(model), "seq_len": 16}
    docs = ["The quick brown fox jumps over the lazy dog. " * 5, "Python is a programming language. " * 5]
    (tmp_path / "c.jsonl").write_text("\n".join(json.dumps({"text": d}) for d in docs))
    (tmp_path / "txt").mkdir()
    for i, d in enumerate(docs):
        (tmp_path / "txt" / f"{i}.txt").write_text(d)
    with fsspec.open("memory://corpus/c.jsonl", "w") as f:
        f.write((tmp_path / "c.jsonl").read_text())
    a = open_source(f"text:{tmp_path / 'c.jsonl'}", **opts)
    b = open_source(f"text:{tmp_path / 'txt'}", **opts)
    c = open_source("text:memory://corpus/c.jsonl", **opts)
    ids = [next(s.batches(100)).inputs.ids for s in (a, b, c)]
    np.testing.assert_array_equal(ids[0], ids[1])
    np.testing.assert_array_equal(ids[0], ids[2])
    sha = S.ATTR_TEXT
    assert a.store_attrs()[sha]["corpus_sha256"] == c.store_attrs()[sha]["corpus_sha256"]
    assert a.fingerprint() != open_source(f"text:{tmp_path / 'c.jsonl'}", **{**opts, "seq_len": 12}).fingerprint()


def test_recorder_with_a_text_batch(tiny_dirs, tmp_path) -> None:
    from tgo_store.capture.hf import tokenizer_of

    model = build_model(f"hf:{tiny_dirs['gpt2']}").train()
    source = open_source("text:pydoc", **input_config(model), seq_len=16, samples=12)
    rec = Recorder(str(tmp_path / "live.zarr"), model, next(source.batches(12)).inputs, batch_size=4,
                   tokenizer=tokenizer_of(model))
    rec.capture(step=0)
    perturb(model)
    rec.capture(step=5)
    assert model.training
    ds = open_store(str(tmp_path / "live.zarr"))
    assert list(ds.checkpoint.values) == [0, 5] and ds.activations.shape == (2, 3, 12, 16, 32)
    model.eval()
    expected = reference_states(model, next(source.batches(12)).inputs)
    np.testing.assert_allclose(ds.activations.isel(checkpoint=1, layer=2).values, expected[2].numpy(),
                               rtol=2e-3, atol=2e-3)
    assert (ds[S.TOKEN_ID].values >= 0).all()


def test_sweep_over_text_checkpoints_equals_ingest(tiny_dirs, bpe, tmp_path) -> None:
    from distributed import Client, LocalCluster

    from tgo_app.sweep import load_config, run_sweep

    model = build("gpt2", len(bpe), seed=2)
    for step in (10, 20):
        perturb(model)
        save(model, bpe, tmp_path / "run" / f"checkpoint-{step}", step=step)
    first = tmp_path / "run" / "checkpoint-10"
    (tmp_path / "sweep.toml").write_text(
        f'[model]\nspec = "hf:{first}"\n[checkpoints]\npaths = "{tmp_path}/run/checkpoint-*"\n'
        f'[data]\nspec = "text:pydoc"\nseq_len = 16\nsamples = 12\n'
        f'[store]\nurl = "{tmp_path}/swept.zarr"\ndtype = "float32"\nbatch_size = 4\nsamples_per_block = 4\n')
    cfg = load_config(tmp_path / "sweep.toml")
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as lc, \
            Client(lc) as client:
        run_sweep(cfg, client, progress=False)
    ingest(str(tmp_path / "direct.zarr"), model_spec=f"hf:{first}", checkpoints=f"{tmp_path}/run/checkpoint-*",
           data_spec="text:pydoc", data_options={"seq_len": 16, "samples": 12}, **{**KW, "batch_size": 4,
                                                                                  "samples_per_block": 4})
    swept, direct = open_store(str(tmp_path / "swept.zarr")), open_store(str(tmp_path / "direct.zarr"))
    assert list(swept.checkpoint.values) == [10, 20]
    np.testing.assert_array_equal(swept.activations.values, direct.activations.values)
    np.testing.assert_array_equal(swept[S.TOKEN_ID].values, direct[S.TOKEN_ID].values)
