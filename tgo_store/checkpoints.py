"""Finding, hashing and loading checkpoint files at any fsspec URL; reading the training step."""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import fsspec

from tgo_store.errors import TgoError

WRAPPER_KEYS = ("model", "state_dict", "module", "net")
STEP_KEYS = ("step", "global_step", "iteration", "epoch")
PREFIXES = ("module.", "_orig_mod.")
STEP_PATTERNS = (
    re.compile(r"(?:step|iter|iteration|it|ckpt|checkpoint)[_\-=]?(\d+)", re.I),
    re.compile(r"(?:epoch|ep|e)[_\-=]?(\d+)", re.I),
    re.compile(r"(\d+)(?!.*\d)"),
)


@dataclass(frozen=True)
class CheckpointRef:
    """One checkpoint file: where it is, its training step and the hash of its bytes."""

    url: str
    step: int
    sha256: str


def _expand(spec: str | Sequence[str]) -> list[str]:
    items = [spec] if isinstance(spec, str) else list(spec)
    urls: list[str] = []
    for item in items:
        if any(ch in item for ch in "*?["):
            fs, _ = fsspec.core.url_to_fs(item)
            matches = sorted(fs.glob(item))
            if not matches:
                raise TgoError(
                    f"no checkpoint matches '{item}'; check the glob pattern and the folder"
                )
            protocol = item.split("://")[0] + "://" if "://" in item else ""
            urls += [m if "://" in m or not protocol else protocol + m for m in matches]
        else:
            urls.append(item)
    return urls


def sha256_of(url: str) -> str:
    """Stream the file and hash it; refuses a missing file with the path."""
    digest = hashlib.sha256()
    try:
        with fsspec.open(url, "rb") as f:
            while block := f.read(1 << 22):
                digest.update(block)
    except FileNotFoundError as exc:
        raise TgoError(f"checkpoint {url} does not exist; check the path or glob") from exc
    return digest.hexdigest()


def step_from_name(url: str) -> int | None:
    """The step in a file name such as step_1200.pth, ckpt-300.pt or epoch3.safetensors."""
    name = url.rstrip("/").rsplit("/", 1)[-1].rsplit(".", 1)[0]
    for pattern in STEP_PATTERNS:
        match = pattern.search(name)
        if match:
            return int(match.group(1))
    return None


def read_step(url: str, state: Mapping | None, index: int) -> int:
    """The training step: stored in the file when present, else in its name, else the index."""
    if isinstance(state, Mapping):
        for key in STEP_KEYS:
            value = state.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                return int(value)
    from_name = step_from_name(url)
    return index if from_name is None else from_name


def _read_bytes(url: str) -> bytes:
    try:
        with fsspec.open(url, "rb") as f:
            return f.read()
    except FileNotFoundError as exc:
        raise TgoError(f"checkpoint {url} does not exist; check the path or glob") from exc


def _parse(data: bytes, url: str) -> Any:
    try:
        if url.endswith(".safetensors"):
            from safetensors.torch import load as load_safetensors

            return load_safetensors(data)
        import torch

        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch and safetensors raise many types for a damaged file
        raise TgoError(
            f"checkpoint {url} is corrupt or truncated ({type(exc).__name__}: {str(exc)[:120]}); "
            "re-save it or remove it from --checkpoints"
        ) from exc


def unwrap_state_dict(
    raw: Any, url: str = "<checkpoint>", prefer_ema: bool = False
) -> dict[str, Any]:
    """Find the model's tensors inside a training checkpoint and strip wrapper prefixes.

    The raw weights (`model`, `state_dict`, ...) are preferred: they are what training evaluates.
    `model_ema` / `state_dict_ema` are used only with ``prefer_ema=True``.
    """
    import torch

    order = ("model_ema", "state_dict_ema", *WRAPPER_KEYS) if prefer_ema else WRAPPER_KEYS
    state = raw
    while isinstance(state, Mapping) and not all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        inner = next((state[k] for k in order if isinstance(state.get(k), Mapping)), None)
        if inner is None:
            break
        state = inner
    if not isinstance(state, Mapping) or not state:
        raise TgoError(
            f"checkpoint {url} holds no state dict; save model.state_dict() or a dict with a 'model' key"
        )
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        keys = ", ".join(sorted(map(str, state))[:6])
        raise TgoError(
            f"checkpoint {url} holds no weight tensors (top-level keys: {keys}); save model.state_dict() "
            "or a dict with a 'model' / 'state_dict' key (EMA weights are read only with prefer_ema=True)"
        )
    for prefix in PREFIXES:
        if tensors and all(k.startswith(prefix) for k in tensors):
            tensors = {k[len(prefix) :]: v for k, v in tensors.items()}
    return tensors


def load_state_dict(url: str, prefer_ema: bool = False) -> dict[str, Any]:
    """The model weights of a checkpoint file (torch pickle or .safetensors)."""
    return unwrap_state_dict(_parse(_read_bytes(url), url), url, prefer_ema)


def resolve_checkpoints(spec: str | Sequence[str]) -> list[CheckpointRef]:
    """Expand globs, hash each file, read each step; sorted by step."""
    refs = []
    for index, url in enumerate(_expand(spec)):
        data = _read_bytes(url)
        raw = _parse(data, url)
        step = read_step(url, raw if isinstance(raw, Mapping) else None, index)
        refs.append(CheckpointRef(url=url, step=int(step), sha256=hashlib.sha256(data).hexdigest()))
    refs.sort(key=lambda r: (r.step, r.url))
    return refs


def load_checkpoint_into(model: Any, ref: CheckpointRef | str) -> None:
    """Load weights strictly; a checkpoint of another architecture is refused with key names."""
    url = ref.url if isinstance(ref, CheckpointRef) else ref
    state = load_state_dict(url)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or mismatched:
        detail = "; ".join(
            f"{what}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
            for what, keys in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("shape mismatch", mismatched),
            )
            if keys
        )
        raise TgoError(
            f"checkpoint {url} does not fit the model ({detail}); it was saved from another architecture: "
            "pass the --model (and model options) it was trained with"
        )
    model.load_state_dict(state, strict=True)
