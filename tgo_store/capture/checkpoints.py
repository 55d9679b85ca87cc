"""Finding, hashing and loading checkpoints at any fsspec URL; reading the training step.

A checkpoint is a file (torch pickle or ``.safetensors``) or a model folder as
``save_pretrained`` / ``transformers.Trainer`` write it (``checkpoint-1200/``); any other
folder is refused with what to pass instead. Its hash covers the weight bytes; two
checkpoints of one series with the same hash (within one list, or against the store) hold the
same weights under different names (a known trap of public series) and are refused.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import fsspec

from tgo_store.errors import TgoError
from tgo_store.facts import CheckpointRef

WRAPPER_KEYS = ("model", "state_dict", "module", "net")
STEP_KEYS = ("step", "global_step", "iteration", "epoch")
PREFIXES = ("module.", "_orig_mod.")
STEP_PATTERNS = (
    re.compile(r"(?:step|iter|iteration|it|ckpt|checkpoint)[_\-=]?(\d+)", re.I),
    re.compile(r"(?:epoch|ep|e)[_\-=]?(\d+)", re.I),
    re.compile(r"(\d+)(?!.*\d)"),
)


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
            urls.append(item if "://" in item else os.path.abspath(item))  # stored absolute: valid from anywhere
    return urls


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


def _is_folder(url: str) -> bool:
    fs, path = fsspec.core.url_to_fs(url)
    return fs.isdir(path)


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
TRAINING_STATE = ("optimizer", "scheduler", "rng_state", "training_args", "scaler")  # Trainer files, not weights
HF_WEIGHTS = re.compile(r"^(model|pytorch_model)(-\d{5}-of-\d{5})?\.(safetensors|bin)$")  # save_pretrained names
LOADABLE_FOLDERS = ("a model folder as save_pretrained or transformers.Trainer write it (model.safetensors, "
                    "pytorch_model.bin or their -0000N-of-0000M shards)")


def _name(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def _folder_files(url: str) -> list[str]:
    """The weight files of a model folder, as URLs, sorted (safetensors preferred); any other folder is refused.

    A model folder holds weights under the names ``save_pretrained`` gives them. A folder of
    other weight files (``step_0.pth``, ``step_100.pth``) is a series, not one checkpoint:
    reading it as one would silently pick or merge files, so it is refused with the glob to use.
    """
    fs, path = fsspec.core.url_to_fs(url)
    entries = fs.ls(path, detail=True)
    files = sorted(e["name"] for e in entries if e.get("type") == "file")
    folders = sorted(_name(e["name"]) for e in entries if e.get("type") == "directory")
    weights = [p for p in files if p.endswith(WEIGHT_SUFFIXES) and not _name(p).startswith(TRAINING_STATE)]
    model_files = [p for p in weights if HF_WEIGHTS.match(_name(p))]
    names = [p for p in model_files if p.endswith(".safetensors")] or model_files
    if not names:
        raise TgoError(_not_a_model_folder(url.rstrip("/"), [_name(p) for p in files], [_name(p) for p in weights],
                                           folders))
    prefix = url[: url.index("://") + 3] if "://" in url else ""
    return [p if "://" in p or not prefix else prefix + p for p in names]


def _not_a_model_folder(url: str, files: list[str], weights: list[str], folders: list[str]) -> str:
    """Why a folder passed as one checkpoint is not one, and what to pass instead (one line)."""
    def some(names: list[str]) -> str:
        return ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")

    if weights:
        suffix = max(WEIGHT_SUFFIXES, key=lambda s: sum(w.endswith(s) for w in weights))
        return (f"checkpoint folder {url} holds {len(weights)} weight file(s) ({some(weights)}), not a model folder; "
                f"pass them as a glob, --checkpoints '{url}/*{suffix}', or pass {LOADABLE_FOLDERS}")
    if any(f.startswith(TRAINING_STATE) or f == "trainer_state.json" for f in files):
        return (f"checkpoint folder {url} holds training state ({some(files)}) but no model weights; "
                f"save the model into it with save_pretrained, or pass {LOADABLE_FOLDERS}")
    checkpoint_folders = [f for f in folders if step_from_name(f) is not None and f.startswith("checkpoint")]
    if checkpoint_folders:
        return (f"checkpoint folder {url} holds checkpoint folders ({some(checkpoint_folders)}), not weights; "
                f"pass them as a glob, --checkpoints '{url}/checkpoint-*'")
    if not files and not folders:
        return (f"checkpoint folder {url} is empty; pass checkpoint files (.pth, .pt, .safetensors, .bin), a glob "
                f"such as '{url}/*.pth', or {LOADABLE_FOLDERS}")
    held = f"{len(files)} file(s) such as {some(files)}" if files else f"only folders ({some(folders)})"
    return (f"checkpoint folder {url} holds no weight files ({held}); pass checkpoint files "
            f"(.pth, .pt, .safetensors, .bin), a glob such as '{url}/*.pth', or {LOADABLE_FOLDERS}")


def _folder_step(url: str) -> int | None:
    import json

    try:
        with fsspec.open(url.rstrip("/") + "/trainer_state.json", "rt") as f:
            return int(json.load(f)["global_step"])
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None


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
    """The model weights of a checkpoint file (torch pickle or .safetensors) or folder (shards merged)."""
    if _is_folder(url):
        state: dict[str, Any] = {}
        for file in _folder_files(url):
            state.update(unwrap_state_dict(_parse(_read_bytes(file), file), file, prefer_ema))
        return state
    return unwrap_state_dict(_parse(_read_bytes(url), url), url, prefer_ema)


def resolve_checkpoint(url: str, index: int = 0) -> CheckpointRef:
    """One checkpoint file or folder: hashed, its step read (``index`` when nothing says)."""
    if _is_folder(url):
        digest = hashlib.sha256()
        for file in _folder_files(url):
            data = _read_bytes(file)
            _parse(data, file)  # refuse a damaged shard now, not in the middle of an ingest
            digest.update(file.rsplit("/", 1)[-1].encode() + b"\0" + data)
        step = _folder_step(url)
        step = read_step(url, None, index) if step is None else step
        return CheckpointRef(url=url, step=int(step), sha256=digest.hexdigest())
    data = _read_bytes(url)
    raw = _parse(data, url)
    step = read_step(url, raw if isinstance(raw, Mapping) else None, index)
    return CheckpointRef(url=url, step=int(step), sha256=hashlib.sha256(data).hexdigest())


def refuse_duplicates(refs: Sequence[CheckpointRef], stored: Sequence[tuple[int, str, str]] = ()) -> None:
    """Two checkpoints with the same weights hash are one checkpoint under two names: refuse.

    ``stored`` are the store's (step, path, sha256): a new checkpoint with the weights of one
    already stored under another step is refused too (public series publish identical weights
    under several step names, and a silent duplicate skews every curve over training). The same
    weights and step at another path are that checkpoint, moved: resumed, never refused.
    """
    seen: dict[str, CheckpointRef] = {}
    for ref in refs:
        first = seen.setdefault(ref.sha256, ref)
        if first is not ref:
            raise TgoError(f"checkpoints {first.url} (step {first.step}) and {ref.url} (step {ref.step}) hold identical "
                           f"weights (sha256 {ref.sha256[:12]}); drop one of them from --checkpoints, or pass "
                           "--allow-duplicate-weights to record both")
    by_sha: dict[str, list[tuple[int, str]]] = {}
    for step, path, sha in stored:
        by_sha.setdefault(sha, []).append((step, path))
    for ref in refs:
        same = by_sha.get(ref.sha256, [])
        if same and ref.url not in {path for _, path in same} and ref.step not in {step for step, _ in same}:
            step, path = same[0]  # same weights and step at another path: that checkpoint, moved (resumed)
            raise TgoError(f"checkpoint {ref.url} (step {ref.step}) holds the weights of {path} (step {step}), already "
                           f"in the store (sha256 {ref.sha256[:12]}); drop it from --checkpoints, or pass "
                           f"--allow-duplicate-weights to record these weights again as step {ref.step}")


def resolve_checkpoints(spec: str | Sequence[str], allow_duplicates: bool = False) -> list[CheckpointRef]:
    """Expand globs, hash each file or folder, read each step; sorted by step; duplicates refused
    (unless ``allow_duplicates``)."""
    refs = [resolve_checkpoint(url, index) for index, url in enumerate(_expand(spec))]
    refs.sort(key=lambda r: (r.step, r.url))
    if not allow_duplicates:
        refuse_duplicates(refs)
    return refs


def load_checkpoint_into(model: Any, ref: CheckpointRef | str) -> None:
    """Load weights strictly; a checkpoint of another architecture is refused with key names."""
    if isinstance(ref, CheckpointRef) and ref.builtin:
        return
    url = ref.url if isinstance(ref, CheckpointRef) else ref
    state = load_state_dict(url)
    expected = model.state_dict()
    shared = Counter(v.data_ptr() for v in expected.values())  # tied weights (an LM head) are saved once
    missing = [k for k in expected if k not in state and shared[expected[k].data_ptr()] == 1]
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
    model.load_state_dict(state, strict=not any(k not in state for k in expected))
