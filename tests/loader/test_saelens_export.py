"""`tgo export --format saelens` (SPEC 9): one row per sequence under the layer's TransformerLens hook,
Array2D(seq_len, D) float32 equal to the store, int32 token ids, a seeded row order, resumable; the
hook name from the store's layer names or a one-line refusal; and `label` only where a store has labels
(issue 34). The store is a real `tgo ingest` of a tiny LLaMA on packed text (`llama_store`)."""

from __future__ import annotations

from pathlib import Path

import datasets
import numpy as np
import pytest
import xarray as xr

from tests.loader.test_export import rows
from tests.support import run_cli
from tgo_store import ActivationLoader
from tgo_store.errors import TgoError
from tgo_store.loader import saelens as saelens_module
from tgo_store.loader.export import PARTIAL_SUFFIX, export, export_hf_datasets
from tgo_store.loader.hook_names import transformer_lens_hook

pytestmark = pytest.mark.slow  # the llama_store fixture trains a tokenizer and ingests (~10 s, once)


def shard_bytes(path: Path) -> dict[str, bytes]:
    return {f.name: f.read_bytes() for f in sorted(path.glob("data-*.arrow"))}


def test_a_text_export_has_no_label_column_an_image_export_keeps_it(llama_store, image_store, tmp_path) -> None:
    ds = xr.open_zarr(llama_store)
    assert (ds.label.values == -1).all()  # what tgo writes for text: SPEC 1's "no label"
    export_hf_datasets(llama_store, 1, tmp_path / "text")
    text = datasets.load_from_disk(str(tmp_path / "text"))
    assert "label" not in text.column_names and {"activations", "token_id", "sample"} <= set(text.column_names)
    assert "label" not in next(iter(ActivationLoader(llama_store, 1, batch_size=64)))
    export_hf_datasets(image_store, 1, tmp_path / "image", tokens=[0])
    image = rows(tmp_path / "image")
    labels = xr.open_zarr(image_store).label.values
    assert (labels >= 0).all()
    np.testing.assert_array_equal(image["label"], labels[np.searchsorted(xr.open_zarr(image_store).sample.values,
                                                                         image["sample"])])


@pytest.mark.parametrize(("layer", "hook"), [(1, "blocks.0.hook_resid_post"), (0, "blocks.0.hook_resid_pre")])
def test_one_row_per_sequence_under_the_hook_name_equal_to_the_store(llama_store, tmp_path, layer, hook) -> None:
    out = tmp_path / "cache"
    summary = export("saelens", llama_store, layer, out, shard_size=7)
    ds = xr.open_zarr(llama_store)
    n, t, d = ds.sizes["sample"], ds.sizes["token"], ds.sizes["feature"]
    assert summary.rows == n and summary.shards == -(-n // 7) and hook in summary.note
    got = datasets.load_from_disk(str(out))
    assert got.column_names == [hook, "token_ids", "sample"]
    assert got.features[hook] == datasets.Array2D(shape=(t, d), dtype="float32")
    assert got.features["token_ids"] == datasets.Sequence(datasets.Value("int32"), length=t)
    x = got.with_format("numpy")[:]
    where = np.searchsorted(ds.sample.values, x["sample"])  # the store's row of each exported sequence
    assert sorted(where.tolist()) == list(range(n))  # every sequence once
    assert where.tolist() != sorted(where.tolist())  # shuffled
    np.testing.assert_array_equal(x[hook], ds.activations.values[0, layer][where].astype(np.float32))
    assert str(got.data.table.schema.field("token_ids").type) == f"fixed_size_list<item: int32>[{t}]"  # on disk
    np.testing.assert_array_equal(x["token_ids"], ds.token_id.values[where])


def test_the_seed_fixes_the_order_and_an_interrupted_export_resumes(llama_store, tmp_path, monkeypatch) -> None:
    export("saelens", llama_store, 1, tmp_path / "a", shard_size=7, seed=3)
    export("saelens", llama_store, 1, tmp_path / "b", shard_size=7, seed=3)
    export("saelens", llama_store, 1, tmp_path / "c", shard_size=7, seed=4)
    assert shard_bytes(tmp_path / "a") == shard_bytes(tmp_path / "b") != shard_bytes(tmp_path / "c")
    order = {k: rows(tmp_path / k)["sample"].tolist() for k in "ac"}
    assert order["a"] != order["c"] and sorted(order["a"]) == sorted(order["c"])
    write, written = saelens_module._write_shard, []

    def cut_after_two(*args):
        if len(written) == 2:
            raise KeyboardInterrupt
        written.append(args[2])
        return write(*args)

    monkeypatch.setattr(saelens_module, "_write_shard", cut_after_two)
    with pytest.raises(KeyboardInterrupt):
        export("saelens", llama_store, 1, tmp_path / "cut", shard_size=7, seed=3)
    assert not (tmp_path / "cut").exists() and (tmp_path / ("cut" + PARTIAL_SUFFIX)).exists()
    monkeypatch.setattr(saelens_module, "_write_shard", write)
    summary = export("saelens", llama_store, 1, tmp_path / "cut", shard_size=7, seed=3)
    assert summary.reused_shards == 2 and shard_bytes(tmp_path / "cut") == shard_bytes(tmp_path / "a")
    assert export("saelens", llama_store, 1, tmp_path / "cut", shard_size=7, seed=3).already_complete


def test_stores_that_do_not_fit_are_refused_in_one_line(llama_store, text_store, image_store, tmp_path,
                                                         capsys) -> None:
    out = str(tmp_path / "out")
    cases = {
        (llama_store, "--layer", "2"): "taken after the model's final norm",
        (llama_store, "--layer", "1", "--exclude-first"): "40 of the 960 chosen positions",
        (text_store, "--layer", "1"): "not valid (padding",
        (image_store, "--layer", "1"): "has no token_id",
        (image_store, "--layer", "1", "--checkpoints", "all"): "one checkpoint",
    }
    for (store, *args), message in cases.items():
        done = run_cli(["export", store, *args, "--format", "saelens", "--out", out], capsys)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1 and message in lines[0], (args, done.stderr)
    done = run_cli(["export", llama_store, "--layer", "1", "--seed", "2", "--out", out], capsys)
    assert done.returncode == 2 and "--seed does not apply to --format hf-datasets" in done.stderr
    assert not list(tmp_path.iterdir())
    done = run_cli(["export", llama_store, "--layer", "1", "--format", "saelens", "--out", out], capsys)
    assert done.returncode == 0 and "hook_name=blocks.0.hook_resid_post, context_size=24, d_in=32" in done.stdout


def with_names(ds: xr.Dataset, names: list[str], model: dict | None = None) -> xr.Dataset:
    out = ds.assign_coords(layer_name=("layer", names))
    out.attrs = {**ds.attrs, "model": model if model is not None else ds.attrs["model"]}
    return out


def test_the_hook_name_comes_from_the_layer_names_never_a_guess(llama_store) -> None:
    ds = xr.open_zarr(llama_store)
    assert [str(n) for n in ds.layer_name.values] == ["model.embed_tokens", "model.layers.0",
                                                      "model.norm after model.layers.1"]
    bert = {"transformers": {"is_decoder": False, "model_type": "bert"}}
    assert transformer_lens_hook(with_names(ds, ["embeddings", "encoder.layer.0", "encoder.layer.1"], bert), 2) \
        == "blocks.1.hook_normalized_resid_post"  # BERT's blocks end in a norm: HookedEncoder's name for it
    assert transformer_lens_hook(with_names(ds, ["transformer.wte", "transformer.h.0", "transformer.h.1"]), 2) \
        == "blocks.1.hook_resid_post"
    refused = {
        "a --hook-modules store?": with_names(ds, ["model.embed_tokens", "model.layers.0.mlp", "model.layers.1"]),
        "several containers": with_names(ds, ["wte", "model.layers.0", "transformer.h.1"]),
        "roberta encoder": with_names(ds, ["embeddings", "encoder.layer.0", "encoder.layer.1"],
                                      {"transformers": {"is_decoder": False, "model_type": "roberta"}}),
        "no 'layer_name' coord": ds.drop_vars("layer_name"),
    }
    for message, dataset in refused.items():
        with pytest.raises(TgoError, match=message):
            transformer_lens_hook(dataset, 1)
