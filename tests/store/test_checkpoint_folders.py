"""Folders passed as one checkpoint: model folders (save_pretrained, sharded, Trainer) load;
the refusals of every other folder are in tests/reliability/test_bad_inputs.py."""

from __future__ import annotations

import json

import torch
from safetensors.torch import save_file

from tests.support import tiny_vit
from tgo_store.capture.checkpoints import load_state_dict, resolve_checkpoints


def _weights() -> dict[str, torch.Tensor]:
    torch.manual_seed(3)
    return {k: v.contiguous() for k, v in tiny_vit().state_dict().items()}


def test_a_sharded_save_pretrained_folder_loads_every_shard(tmp_path) -> None:
    state = _weights()
    names = sorted(state)
    folder = tmp_path / "hf_model"
    folder.mkdir()
    shards = {"model-00001-of-00002.safetensors": names[: len(names) // 2],
              "model-00002-of-00002.safetensors": names[len(names) // 2:]}
    for file, keys in shards.items():
        save_file({k: state[k] for k in keys}, str(folder / file))
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {k: file for file, keys in shards.items() for k in keys}}))
    (folder / "config.json").write_text("{}")
    (folder / "notes.pth").write_bytes(b"not weights: a save_pretrained folder reads only its own names")
    loaded = load_state_dict(str(folder))
    assert sorted(loaded) == names and all(torch.equal(loaded[k], state[k]) for k in names)
    assert resolve_checkpoints(str(folder))[0].step == 0


def test_a_trainer_checkpoint_folder_reads_its_weights_and_step(tmp_path) -> None:
    state = _weights()
    folder = tmp_path / "run" / "checkpoint-900"
    folder.mkdir(parents=True)
    save_file(state, str(folder / "model.safetensors"))
    torch.save({"state": {}}, folder / "optimizer.pt")
    torch.save({"rng": 1}, folder / "rng_state.pth")
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": 1200}))
    loaded = load_state_dict(str(folder))
    assert all(torch.equal(loaded[k], state[k]) for k in state) and sorted(loaded) == sorted(state)
    refs = resolve_checkpoints(str(tmp_path / "run" / "checkpoint-*"))
    assert [r.step for r in refs] == [1200]  # trainer_state.json is the step, not the folder name
