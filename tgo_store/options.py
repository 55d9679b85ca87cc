"""The ingest options, declared once: ``tgo ingest``'s flags, the sweep file, the plan, the Recorder.

Each field of ``IngestOptions`` carries its own help text, command-line spelling and parser
(``cli``), and where a ``sweep.toml`` holds it (``sweep``). ``tgo ingest`` builds its flags
from these declarations, ``tgo sweep`` reads its ``[model]``/``[checkpoints]``/``[data]``/
``[store]`` values through them, ``prepare_store`` takes one ``IngestOptions`` and keeps it in
the ``StorePlan``, and the live ``Recorder`` builds one (its checkpoint set per step). A new ingest option is one
field here.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from tgo_store.errors import TgoError

DEFAULT_MASK_RATE = 0.15  # masked_lm: share of valid positions masked


MAX_SELECTED = 1_000_000  # more layers or token positions than any model has: a typo, refused before expansion


def _shown(text: str) -> str:
    return text if len(text) <= 60 else text[:57] + "..."


def parse_selection(text: str | None) -> list[int] | None:
    """'0,3-5,8' -> [0, 3, 4, 5, 8]; None or 'all' -> None (everything).

    Ranges are checked arithmetically before any is expanded: '0-100000000' is refused at once
    (it would be a list of 10^8 ints), and every message is one short line."""
    if text is None or text.strip().lower() == "all":
        return None
    ranges: list[tuple[int, int]] = []
    try:
        for part in text.split(","):
            lo, sep, hi = part.strip().partition("-")
            ranges.append((int(lo), int(hi) if sep else int(lo)))
    except ValueError as exc:
        raise TgoError(f"cannot read the selection '{_shown(text)}'; use indices and ranges like 0,3-5,8") from exc
    backwards = next((f"{a}-{b}" for a, b in ranges if b < a), None)
    if backwards:
        raise TgoError(f"the range {backwards} in the selection '{_shown(text)}' runs backwards; write LOW-HIGH, e.g. 3-5")
    count = sum(b - a + 1 for a, b in ranges)
    if count > MAX_SELECTED:
        many = str(count) if count < 10**15 else f"about 1e{len(str(count)) - 1}"
        raise TgoError(f"the selection '{_shown(text)}' names {many} indices, more than any model has "
                       f"(at most {MAX_SELECTED}); check the range, e.g. --tokens 0-16")
    return [i for a, b in ranges for i in range(a, b + 1)]


def _literal(text: str) -> Any:
    """A value as JSON (``false``, ``3``), else as a Python literal (``False``, ``None``, ``(16, 16)``):
    model options are keywords of Python libraries, spelled either way; ValueError if neither."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
        raise ValueError(text) from exc


def parse_kwargs(items: list[str] | None) -> dict:
    """['img_size=32', 'class_token=False'] or one JSON / Python dict -> a dict with values parsed
    (JSON, then Python literals; anything else stays a string)."""
    result: dict = {}
    for item in items or []:
        if item.strip().startswith("{"):
            try:
                parsed = _literal(item)
            except ValueError:
                parsed = None
            if not isinstance(parsed, dict):
                raise TgoError(f"--model-kwargs '{item}' is not valid JSON; use key=value or a JSON object")
            result.update(parsed)
            continue
        key, sep, value = item.partition("=")
        if not sep:
            raise TgoError(f"--model-kwargs '{item}' has no '='; use key=value, e.g. img_size=32")
        try:
            result[key.strip()] = _literal(value)
        except ValueError:
            result[key.strip()] = value
    return result


def _one_or_many(items: list[str] | None) -> str | list[str] | None:
    """One --checkpoints value is a glob or a path; several are a list of paths."""
    return items[0] if items and len(items) == 1 else items


def _comma_list(text: str | None) -> list[str] | None:
    return text.split(",") if text else None


@dataclass(frozen=True)
class Flag:
    """How one option is spelled on ``tgo ingest``'s command line.

    ``kind`` is the type typer reads (``"0,3-6"`` strings for selections); ``parse`` turns it
    into the option's value; ``name`` is the parameter (and, with ``_`` as ``-``, the flag)
    when it differs from the field's; ``key`` names the ``data_options`` entry a flag fills.
    """

    help: str
    kind: Any
    name: str | None = None
    parse: Callable[[Any], Any] | None = None
    key: str | None = None
    flag: str | None = None  # an explicit flag spelling (typer's own is the name with '-')


@dataclass(frozen=True)
class SweepKey:
    """Where a ``sweep.toml`` holds an option: ``[table] key``, its types and what it must be."""

    table: str
    key: str
    kinds: type | tuple
    what: str
    required: bool = False


def _option(default: Any = None, *, cli: Flag | tuple[Flag, ...] | None = None, sweep: SweepKey | None = None,
            factory: Callable[[], Any] | None = None) -> Any:
    meta = {"cli": cli if isinstance(cli, tuple) else (cli,) if cli else (), "sweep": sweep}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


_REQUIRED = {"cli": (), "sweep": None}


@dataclass(frozen=True)
class IngestOptions:
    """Every option of an ingest (``tgo_store.ingest`` keywords); the store URL aside."""

    model_spec: str = field(metadata={**_REQUIRED, "cli": (Flag(
        "timm model name (random init), package.module:factory, or hf:PATH "
        "(transformers folder or .gguf; hf:minilm, hf:smollm2)", str, name="model"),),
        "sweep": SweepKey("model", "spec", str, "str", required=True)})
    data_spec: str = field(metadata={**_REQUIRED, "cli": (Flag(
        "image folder, .npy/.npz, sklearn:digits[:train|:test], synthetic:N, "
        "text:pydoc or text:URL (.txt, .jsonl, folder of .txt)", str, name="data"),),
        "sweep": SweepKey("data", "spec", str, "str", required=True)})
    checkpoints: Any = _option(None, cli=Flag(
        "checkpoint files, folders (checkpoint-1200/) or a glob at any fsspec URL; repeatable; "
        "hf: models without it record their own weights", list[str] | None, parse=_one_or_many),
        sweep=SweepKey("checkpoints", "paths", (str, list), "str or list", required=True))
    data_options: dict = _option(cli=(
        Flag("text: tokens per sequence (default 128)", int | None, name="seq_len", key="seq_len"),
        Flag("text: left or right = one padded document per sequence "
             "(default: pack documents into full sequences)", str | None, name="padding", key="padding"),
        Flag("text: keep a seeded subset of this many sequences", int | None, name="samples", key="samples"),
    ), factory=dict)  # SourceOptions fields: seq_len, padding, samples, seed (sweep: [data] seq_len ...)
    batch_size: int = _option(64, cli=Flag("images per forward pass", int),
                              sweep=SweepKey("store", "batch_size", int, "a positive integer"))
    layers: Sequence[int] | None = _option(None, cli=Flag(
        "layers to keep, e.g. 0,3-6 (0 = embedding output)", str | None, parse=parse_selection),
        sweep=SweepKey("store", "layers", list, "a list of layer indices"))
    tokens: Sequence[int] | None = _option(None, cli=Flag("tokens to keep, e.g. 0-16", str | None, parse=parse_selection),
                                           sweep=SweepKey("store", "tokens", list, "a list of token indices"))
    dtype: str = _option("float16", cli=Flag("storage dtype: float16 or float32", str),
                         sweep=SweepKey("store", "dtype", str, "float16 or float32"))
    device: str = _option("auto", cli=Flag("auto, cpu, cuda, cuda:1 ...", str))
    precision: str = _option("float32", cli=Flag("model compute dtype: float32, or float16/bfloat16 (GPU speed)", str),
                             sweep=SweepKey("store", "precision", str, "float32, float16 or bfloat16"))
    model_kwargs: dict = _option(cli=Flag("model option key=value; repeatable", list[str] | None, parse=parse_kwargs,
                                          flag="--model-kwargs"),
                                 sweep=SweepKey("model", "kwargs", dict, "a table of model options"), factory=dict)
    hook_modules: Sequence[str] | None = _option(None, cli=Flag(
        "for non-timm models: comma-separated module names to record", str | None, parse=_comma_list))
    samples_per_block: int | None = _option(None, cli=Flag("samples per shard (default: ~32 MB per layer)", int | None),
                                            sweep=SweepKey("store", "samples_per_block", int, "a positive integer"))
    gradients: bool = _option(False, cli=Flag(
        "also record ∂L/∂h of every recorded state (SPEC 5 `gradients`): "
        "classification for labelled images, causal/masked LM for text", bool),
        sweep=SweepKey("store", "gradients", bool, "true or false"))
    loss: str | None = _option(None, cli=Flag("with --gradients: classification, causal_lm or masked_lm "
                                              "(default: chosen from the model)", str | None),
                               sweep=SweepKey("store", "loss", str, "classification, causal_lm or masked_lm"))
    mask_rate: float = _option(DEFAULT_MASK_RATE, cli=Flag("masked_lm: share of valid positions masked", float))
    mask_seed: int = _option(0, cli=Flag("masked_lm: seed of the masked positions", int))
    gradient_dtype: str | None = _option(None, cli=Flag("with --gradients: their storage dtype, float32 "
                                                        "(default for a new store) or float16", str | None))
    allow_duplicate_weights: bool = _option(False, cli=Flag(
        "record a checkpoint whose weights (sha256) the list or the store already holds under another name", bool))
    storage_options: dict = _option(factory=dict)  # fsspec options of the store URL (Python callers only)


def option_fields() -> tuple[Any, ...]:
    """The dataclass fields of ``IngestOptions``, in declaration order (the CLI's flag order)."""
    return fields(IngestOptions)


def ingest_options(**values: Any) -> IngestOptions:
    """``IngestOptions`` from keywords, with None for a dict option read as empty (callers pass None)."""
    for name in ("model_kwargs", "data_options", "storage_options"):
        if name in values and values[name] is None:
            values[name] = {}
    return IngestOptions(**values)
