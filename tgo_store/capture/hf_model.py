"""Facts about a transformers model: its blocks, final norm, direction of attention, description.

Read by the capturer (which states to record and how to name them), by the loss chooser
(causal or masked LM) and by the store's model description; one module so neither of those
imports the other.
"""

from __future__ import annotations

from typing import Any

from tgo_store.errors import TgoError
from tgo_store.store.schema import AFTER_FINAL_NORM  # the store's layer_name convention

FINAL_NORMS = ("norm", "ln_f", "final_layer_norm", "final_layernorm", "norm_f", "final_norm")


def backbone(model: Any) -> Any:
    """The base model (no task head) that returns hidden states."""
    return getattr(model, "base_model", model)


def block_list(model: Any) -> tuple[str, Any]:
    """Name and ModuleList of the transformer blocks (``model.layers``, ``transformer.h``, ``encoder.layer``)."""
    import torch

    n = int(model.config.num_hidden_layers)
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n:
            return name, module
    raise TgoError(f"cannot find the {n} transformer blocks of {type(model).__name__}; "
                   "record it with --hook-modules instead")


def final_norm_name(model: Any) -> str | None:
    """The module name of the norm after the last block, if the model has one."""
    base = backbone(model)
    prefix = next((n for n, m in model.named_modules() if m is base), "")
    for child, _ in base.named_children():
        if child in FINAL_NORMS:
            return f"{prefix}.{child}" if prefix else child
    return None


def layer_names(model: Any) -> list[str]:
    """layer_name of hidden state 0..L: the embeddings module, then each block.

    In transformers the last hidden state of a model with a final norm (LLaMA, GPT-2) is taken
    after that norm, so it is named for it: ``"{norm} after {blocks}.{L-1}"``; Razzhigaev et
    al.'s profiles (layers 0..L-1) leave it out, and the report can draw it or not.
    """
    blocks, _ = block_list(model)
    embed = model.get_input_embeddings()
    names = {m: n for n, m in model.named_modules()}
    embed_name = names[embed]
    parent = embed_name.rsplit(".", 1)[0] if "." in embed_name else embed_name
    first = parent if parent.endswith("embeddings") else embed_name
    out = [first] + [f"{blocks}.{i}" for i in range(int(model.config.num_hidden_layers))]
    norm = final_norm_name(model)
    if norm is not None:
        out[-1] = f"{norm}{AFTER_FINAL_NORM}{out[-1]}"
    return out


def describe(model: Any) -> dict:
    """Facts about an HF model for the store's model description (refused if they change)."""
    import hashlib

    config = model.config.to_json_string(use_diff=False)
    return {"transformers_config_sha256": hashlib.sha256(config.encode()).hexdigest(),
            "model_type": str(model.config.model_type),
            "is_decoder": is_causal(model),
            "final_norm_applied": final_norm_name(model) is not None,
            "hidden_states": int(model.config.num_hidden_layers) + 1}


def is_causal(model: Any) -> bool:
    """Whether position 0 ignores later tokens (a decoder), tested on two 3-token inputs."""
    import torch

    vocab = int(model.get_input_embeddings().num_embeddings)
    ids = torch.tensor([[1, 2, 3], [1, 2, 4]]) % vocab
    device, training = next(model.parameters()).device, model.training
    model.eval()  # dropout would hide the answer
    try:
        with torch.inference_mode():
            last = backbone(model)(input_ids=ids.to(device), output_hidden_states=True).hidden_states[-1]
    finally:
        model.train(training)
    change = (last[0, :2] - last[1, :2]).norm() / last[0, :2].norm().clamp_min(1e-30)
    return bool(change < 1e-5)  # not exactly 0: rows of one batch may take different kernel paths


def max_positions(model: Any) -> int | None:
    for key in ("max_position_embeddings", "n_positions", "n_ctx"):
        value = getattr(model.config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None
