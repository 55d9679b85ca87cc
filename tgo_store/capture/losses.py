"""∂L/∂h for every recorded hidden state, from ONE forward and ONE backward pass.

The loss (SPEC section 5 ``loss`` attribute) is chosen from the model and the data:
classification cross-entropy for image models with labels, causal LM for decoders, masked LM
with a seeded mask for encoders. Every loss is SUMMED over samples and predicted positions
(scale 1): a sample's gradient then depends on that sample only, never on the batch size, and
stays far above float16's subnormal range (a mean over B·T positions would divide it by B·T).

Hidden states come from the same forward as the loss (``forward_hooks.collect_outputs`` on named
modules for timm ViTs and hooked models, ``hidden_states`` for transformers), and one
``torch.autograd.grad(loss, states)`` returns every layer's gradient: tensor hooks inside the
graph, no ``register_full_backward_hook`` (it breaks on in-place ops and dict outputs), and
nothing accumulates into any parameter's ``.grad``. The model runs in eval(); callers restore
its train/eval state.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tgo_store.capture.forward_hooks import collect_outputs
from tgo_store.errors import TgoError
from tgo_store.facts import CAUSAL_LM, CLASSIFICATION, DESCRIPTIONS, MASKED_LM, LossSpec
from tgo_store.options import DEFAULT_MASK_RATE  # declared with the ingest options


def choose_loss(model: Any, labels: np.ndarray, text: bool, requested: str | None = None,
                mask_rate: float = DEFAULT_MASK_RATE, seed: int = 0) -> LossSpec:
    """The loss for this model and data, or a one-line TgoError when there is none."""
    from tgo_store.capture.hf import is_hf_model, tokenizer_of

    if requested is not None and requested not in DESCRIPTIONS:
        raise TgoError(f"unknown --loss {requested}; use one of {', '.join(DESCRIPTIONS)}")
    if not is_hf_model(model):
        if text:
            raise TgoError("--gradients on text needs a transformers language model (hf:PATH); "
                           f"{type(model).__name__} has no language-model loss")
        if requested not in (None, CLASSIFICATION):
            raise TgoError(f"--loss {requested} needs a transformers language model; image models use classification")
        if np.asarray(labels).size == 0 or (np.asarray(labels) < 0).any():
            raise TgoError("--gradients on images needs labels for the classification loss and this dataset has "
                           "samples without one (label -1); use a labelled dataset or drop --gradients")
        return LossSpec(CLASSIFICATION)
    from tgo_store.capture.hf_model import describe

    decoder = describe(model)["is_decoder"]
    kind = requested or (CAUSAL_LM if decoder else MASKED_LM)
    if kind == CLASSIFICATION:
        raise TgoError("--loss classification is for image models; use causal_lm (decoders) or masked_lm (encoders)")
    if kind == CAUSAL_LM and not decoder:
        raise TgoError(f"{type(model).__name__} is an encoder (bidirectional attention): a causal LM loss would "
                       "let each position see its target; use --loss masked_lm")
    if kind == MASKED_LM and decoder:
        raise TgoError(f"{type(model).__name__} is a decoder; use --loss causal_lm")
    if model.get_output_embeddings() is None:
        raise TgoError(f"--gradients needs a loss and {type(model).__name__} has no language-model head; "
                       "save the model with its LM head (e.g. *ForCausalLM / *ForMaskedLM) or drop --gradients")
    if kind == MASKED_LM:
        tokenizer = tokenizer_of(model)
        if tokenizer is None or tokenizer.mask_token_id is None:
            raise TgoError("masked LM gradients need the tokenizer's mask token and this model has none; "
                           "drop --gradients or use a tokenizer with a [MASK] token")
        if not 0 < mask_rate < 1:
            raise TgoError(f"--mask-rate must be in (0, 1), got {mask_rate}")
        return LossSpec(MASKED_LM, mask_rate=float(mask_rate), seed=int(seed))
    return LossSpec(CAUSAL_LM)


def backward_once(states: Sequence[Any], loss: Any) -> list[Any]:
    """∂loss/∂state for every state from one backward; zeros for a state the loss does not reach."""
    import torch

    grads = torch.autograd.grad(loss, list(states), allow_unused=True)
    return [torch.zeros_like(s) if g is None else g for s, g in zip(states, grads, strict=True)]


def classification_gradients(model: Any, module_names: Sequence[str], images: Any, labels: np.ndarray,
                             loss: LossSpec) -> tuple[list[Any], list[Any]]:
    """(states, gradients), each a (B, T, D) tensor per named module, for summed cross-entropy."""
    import torch
    import torch.nn.functional as F

    target = torch.as_tensor(np.asarray(labels), dtype=torch.int64, device=images.device)
    with torch.inference_mode(False), torch.enable_grad():
        states, logits = collect_outputs(model, module_names, lambda: model(images), differentiable=True)
        if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
            raise TgoError(f"{type(model).__name__} does not return (batch, classes) logits, so it has no "
                           "classification loss; drop --gradients")
        value = F.cross_entropy(logits.float(), target, reduction="sum") * loss.scale
        grads = backward_once(states, value)
    return [s.detach() for s in states], grads


def masked_inputs(ids: Any, valid: Any, special: Any, sample_ids: np.ndarray, loss: LossSpec,
                  mask_token_id: int) -> tuple[Any, Any]:
    """Masked-LM inputs and the (B, S) bool of masked positions, drawn per (seed, sample id)."""
    import torch

    from tgo_store.store.masked_positions import masked_draw

    chosen = masked_draw(sample_ids, ids.shape[1], loss.seed, float(loss.mask_rate))
    where = torch.as_tensor(chosen, device=ids.device) & valid & ~special
    return torch.where(where, torch.full_like(ids, mask_token_id), ids), where


def language_gradients(model: Any, layer_indices: Sequence[int], batch: Any, sample_ids: np.ndarray,
                       loss: LossSpec) -> tuple[list[Any], list[Any]]:
    """(states, gradients) of ``hidden_states[i]`` for causal or masked LM; zeros at padding."""
    import torch
    import torch.nn.functional as F

    from tgo_store.capture.hf import tokenizer_of

    ids, valid = batch.ids, batch.attention_mask
    if loss.kind == MASKED_LM:
        ids, targets_at = masked_inputs(ids, valid, batch.special, sample_ids, loss, tokenizer_of(model).mask_token_id)
    with torch.inference_mode(False), torch.enable_grad():
        out = model(input_ids=ids, attention_mask=valid.long(), output_hidden_states=True, return_dict=True,
                    use_cache=False)
        logits = out.logits.float()
        if loss.kind == CAUSAL_LM:
            at = valid[:, :-1] & valid[:, 1:]
            value = F.cross_entropy(logits[:, :-1][at], batch.ids[:, 1:][at], reduction="sum")
        else:
            value = F.cross_entropy(logits[targets_at], batch.ids[targets_at], reduction="sum")
        states = [out.hidden_states[i] for i in layer_indices]
        if not all(s.requires_grad for s in states):
            raise TgoError(f"{type(model).__name__}'s parameters are frozen (requires_grad False), so its hidden "
                           "states carry no gradient; unfreeze them or drop --gradients")
        grads = backward_once(states, value * loss.scale)
    keep = valid[..., None]
    zero = torch.zeros((), dtype=states[0].dtype, device=states[0].device)
    return ([torch.where(keep, s.detach(), zero) for s in states], [torch.where(keep, g, zero) for g in grads])


def loss_for_ingest(model: Any, source: Any, capturer: Any, gradients: bool, requested: str | None,
                    mask_rate: float, seed: int) -> LossSpec | None:
    """The run's loss (None without --gradients); refuses a capturer or data with no gradient path."""
    if not gradients:
        if requested is not None:
            raise TgoError(f"--loss {requested} only applies with --gradients; add --gradients or drop --loss")
        return None
    if not hasattr(capturer, "capture_with_gradients"):
        raise TgoError(f"the {type(capturer).__name__} capturer cannot record gradients; drop --gradients")
    text = source.positions() is not None
    return choose_loss(model, source.labels, text, requested, mask_rate, seed)


def capture_gradient_block(fillers: tuple[Any, Any], capturer: Any, batches: Any, n_samples: int, loss: LossSpec,
                           source: str, samples: str) -> tuple[np.ndarray, np.ndarray]:
    """Fill one activation block and its gradient block from (prepared inputs, source Batch) pairs.

    Same NaN/Inf refusal as activations: a non-finite gradient (or one beyond the storage dtype)
    stores nothing of the block.
    """
    from tgo_store.capture.transfer import NonFiniteActivations

    shape = (len(capturer.layer_indices), n_samples, len(capturer.token_indices), capturer.feature_dim)
    done: list[np.ndarray] = []
    try:
        for filler in fillers:
            filler.start(shape)
        offset = 0
        for inputs, batch in batches:
            parts, grads = capturer.capture_with_gradients(inputs, batch, loss)
            fillers[0].add(parts, offset)
            fillers[1].add(grads, offset)
            offset += len(batch.sample_ids)
        for filler in fillers:
            done.append(filler.finish())
        return done[0], done[1]
    except NonFiniteActivations as exc:
        for array in done:
            fillers[0].pool.release(array)
        names = [capturer.layer_names[i] for i in exc.layers]
        what = ("activations", "gradients")[len(done)]
        raise TgoError(f"{source} gives NaN/Inf {what} (or values beyond {fillers[0].dtype}) at "
                       f"{', '.join(names[:3])} in {samples}; nothing of this block was stored: fix the model, "
                       "drop the checkpoint, or use --dtype float32") from None
    finally:
        for filler in fillers:
            filler.abandon()
