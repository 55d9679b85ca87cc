"""The HTML page of a report: one self-contained file (figures inline as base64 PNG, no links
out), and the provenance tables read from a results dataset's coords and attrs."""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Iterable
from typing import Any

import xarray as xr

from tgo_store.store import schema as S

STYLE = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
img{max-width:100%;height:auto;border:1px solid #eee}h2{border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;font-size:13px;margin-bottom:1em}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}
td{overflow-wrap:break-word;max-width:760px}th{background:#f6f6f6}
pre{margin:0;white-space:pre-wrap;overflow-wrap:break-word;font-size:12px}.note{color:#666}
details>summary{cursor:pointer;color:#555}"""

# attrs that describe the run rather than a metric definition
RUN_ATTRS = ("created_by", "created_at", "scheduler", "host", "python")


def esc(value: Any) -> str:
    return html.escape(str(value))


def header(title: str, summary: str) -> str:
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{esc(title)}</h1><p class='note'>{esc(summary)}</p>"
    )


def summary(res: xr.Dataset) -> str:
    """What the results cover, in plain words (not the dims: 'checkpoint=7 ... token_other=65')."""
    steps = [int(v) for v in res[S.CHECKPOINT].values]
    layers = [int(v) for v in res[S.LAYER].values]
    parts = [f"{len(steps)} checkpoint{'s' * (len(steps) != 1)} (training steps {steps[0]} to {steps[-1]})"
             if steps else "no checkpoints",
             f"{len(layers)} layers ({layers[0]} = embedding output)" if layers else "no layers"]
    if S.TOKEN in res.sizes:
        kinds = [str(k) for k in res[S.TOKEN_KIND].values] if S.TOKEN_KIND in res.coords else []
        patches = kinds.count("patch")
        what = f" (CLS and {patches} patches)" if patches and "cls" in kinds else ""
        parts.append(f"{res.sizes[S.TOKEN]} {'tokens' if patches else 'positions'} per sample{what}")
    shape = as_mapping(res.attrs.get("tgo_config", {})).get("shape")
    if isinstance(shape, list) and len(shape) == 5:
        parts.append(f"{shape[2]} samples of {shape[4]} features")
    inputs = as_mapping(res.attrs.get("input_attrs", {}))
    model = model_label(inputs)
    dataset = as_mapping(inputs.get("dataset", {})).get("name")
    where = f" Model {model} on {dataset}." if model and dataset else ""
    return "These results: " + ", ".join(parts) + "." + where


def figure(key: str, heading: str, caption: str, png: bytes, reading: str | None = None) -> str:
    """A section: heading, caption, the figure, and under it the sentence read from the numbers."""
    data = base64.b64encode(png).decode("ascii")
    under = f"<p class='reading'>{esc(reading)}</p>" if reading else ""
    return (
        f"<h2 id='{esc(key)}'>{esc(heading)}</h2><p>{esc(caption)}</p>"
        f"<img alt='{esc(heading)}' src='data:image/png;base64,{data}'>{under}"
    )


def skipped(headings: Iterable[str]) -> str:
    names = ", ".join(headings)
    return f"<p class='note'>Not shown (metrics not in these results): {esc(names)}.</p>" if names else ""


def table(head: tuple[str, ...], rows: Iterable[tuple[Any, ...]], pre: bool = False) -> str:
    """An HTML table; a cell may be ready HTML (``Raw``), else it is escaped text."""
    def cell(v: Any) -> str:
        if isinstance(v, Raw):
            return f"<td>{v}</td>"
        return f"<td><pre>{esc(v)}</pre></td>" if pre else f"<td>{esc(v)}</td>"
    body = "".join("<tr>" + "".join(cell(v) for v in row) + "</tr>" for row in rows)
    return "<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + f"</tr>{body}</table>"


class Raw(str):
    """A table cell that is already HTML (a folded JSON block)."""


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=1, default=str)


def as_mapping(value: Any) -> dict:
    """A nested attr as a dict: JSON text decoded (results written by plain xarray keep it as text); {} otherwise."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return value if isinstance(value, dict) else {}


SHORT = 160  # a value this long or shorter reads inline; a longer one is folded


def readable(value: Any) -> str:
    """A value as a reader wants it in a table cell: text as is, a short list or mapping inline."""
    if isinstance(value, str) and value.lstrip().startswith("{"):  # JSON kept as a string attr
        value = as_mapping(value) or value
    if isinstance(value, dict):
        return "; ".join(f"{k}: {readable(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(readable(v) for v in value)
    return str(value)


def cell(value: Any) -> Any:
    """A cell: the readable text when short; else its first words and the whole JSON folded in <details>."""
    text = readable(value) or "none"
    if len(text) <= SHORT:
        return text
    return Raw(f"{esc(text[:SHORT].rsplit(' ', 1)[0])} … <details><summary>all ({len(text)} characters, JSON)"
               f"</summary><pre>{esc(_text(value))}</pre></details>")


def flat(mapping: dict, prefix: str = "") -> list[tuple[str, Any]]:
    """A nested mapping as (dotted key, value) rows: `model.transformers.model_type`."""
    rows: list[tuple[str, Any]] = []
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            rows += flat(value, name + ".")
        else:
            rows.append((name, value))
    return rows


def folded(title: str, value: Any) -> str:
    """The raw JSON of a table, folded away under it."""
    return f"<details><summary>{esc(title)}</summary><pre>{esc(_text(value))}</pre></details>"


def model_label(inputs: dict) -> str | None:
    """The model in a few words: a name, or for local weights (hf:/path/checkpoint-0) the class and folder."""
    model = as_mapping(inputs.get("model", {}))
    name = str(model.get("name") or "")
    if not name:
        return None
    path = name.removeprefix("hf:")
    if "/" not in path:
        return name
    parts = [p for p in path.rstrip("/").split("/") if p]
    cls = str(model.get("class", "")).rsplit(".", 1)[-1]
    folder = "/".join(parts[-3:-1] if parts[-1].startswith("checkpoint") else parts[-2:])
    return f"{cls or parts[-1]} (local weights, …/{folder})"


def checkpoint_rows(res: xr.Dataset) -> list[tuple[int, str, str]]:
    """(step, path, sha256 prefix) per checkpoint; '-' where the store did not record it."""
    steps = [int(s) for s in res[S.CHECKPOINT].values]
    paths = res[S.CHECKPOINT_PATH].values if S.CHECKPOINT_PATH in res.coords else ["-"] * len(steps)
    hashes = res[S.CHECKPOINT_SHA256].values if S.CHECKPOINT_SHA256 in res.coords else ["-"] * len(steps)
    return [(s, str(p), str(h)[:12]) for s, p, h in zip(steps, paths, hashes, strict=True)]


def provenance(res: xr.Dataset, training: dict | None = None) -> str:
    """Model, dataset, checkpoints, metric definitions and parameters, package versions: readable tables,
    each with its raw JSON folded away (<details>) for whoever wants it verbatim."""
    inputs = as_mapping(res.attrs.get("input_attrs", {}))
    parts = ["<h2 id='provenance'>Provenance</h2>"]
    source = {k: as_mapping(inputs[k]) or inputs[k] for k in ("model", "dataset", "created_by", "tgo_schema")
              if k in inputs}
    if source:
        parts.append("<h3>Model and dataset (from the activation store)</h3>")
        parts.append(table(("item", "value"), [(k, cell(v)) for k, v in flat(source)]))
        parts.append(folded("raw JSON of the store's attributes", inputs))
    key, label = ("accuracy", "held-out accuracy")
    if training and not training.get(key):
        key, label = ("held_out_loss", "held-out loss (nats)")
    score = dict(zip(training["steps"], training.get(key) or [], strict=False)) if training else {}
    rows = [(s, p, h, f"{score[s]:.3f}" if s in score else "-") for s, p, h in checkpoint_rows(res)]
    parts.append("<h3>Checkpoints</h3>")
    parts.append(table(("step", "path", "sha256 (prefix)", label), rows))
    skip = {"input_attrs", "package_versions", *RUN_ATTRS}
    definitions = {k: v for k, v in res.attrs.items() if k not in skip}
    parts.append("<h3>Metric definitions and parameters</h3>")
    parts.append(table(("name", "value"), [(k, cell(v)) for k, v in definitions.items()]))
    parts.append(folded("raw JSON of the results' attributes", definitions))
    versions = as_mapping(res.attrs.get("package_versions", {}))
    run = [(k, cell(res.attrs[k])) for k in RUN_ATTRS if k in res.attrs]
    parts.append("<h3>Analysis run and package versions</h3>")
    parts.append(table(("item", "value"), run + sorted(versions.items())))
    return "".join(parts)


def footer() -> str:
    return "</body></html>"
