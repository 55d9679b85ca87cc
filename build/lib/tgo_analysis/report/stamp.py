"""Whether a report folder was written from exactly these inputs, so a resumed demo can keep it.

A report takes ~15 s of matplotlib; re-running a finished demo should not pay it again. The
stamp is a digest of what the page is drawn from: the contents of every file of the results
stores (their root metadata without the attrs of the latest run, ``PER_RUN_ATTRS``), the page's
options and the tgo version. Contents, not modification times: a resumed analysis that computes
nothing still rewrites its cross-unit results (clusters, coordinates) with the same bytes. The
stamp is written after the page, so an interrupted report is never taken as current.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tgo_analysis.results.provenance import PER_RUN_ATTRS, package_versions

STAMP = ".tgo-report-inputs"


def inputs_digest(stores: Sequence[str | Path], options: Mapping[str, Any]) -> str | None:
    """The digest of the results stores' files and the report options; None for a store that is
    not a local folder (it cannot be listed and read cheaply, so the report is always rewritten)."""
    listing = []
    for store in stores:
        root = Path(store)
        if not root.is_dir():
            return None
        for folder, _, files in sorted(os.walk(root)):
            for name in sorted(files):
                path = Path(folder) / name
                listing.append((os.path.relpath(path, root), _file_digest(path, root)))
    text = json.dumps({"version": package_versions()["tgo"], "stores": [str(s) for s in stores], "files": listing,
                       "options": options}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _file_digest(path: Path, root: Path) -> str:
    if path == root / "zarr.json":  # the root attrs: without those of the latest run
        meta = json.loads(path.read_text())
        attrs = {k: v for k, v in meta.get("attributes", {}).items() if k not in PER_RUN_ATTRS}
        return hashlib.sha256(json.dumps({**meta, "attributes": attrs}, sort_keys=True).encode()).hexdigest()
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def is_current(report_dir: Path, digest: str | None) -> bool:
    """True when the page exists and was the last one written from inputs with this digest."""
    stamp = report_dir / STAMP
    return digest is not None and (report_dir / "index.html").is_file() and stamp.is_file() \
        and stamp.read_text().strip() == digest


def mark(report_dir: Path, digest: str | None) -> None:
    """Record the digest of the inputs the page in ``report_dir`` was just written from."""
    if digest is not None:
        (report_dir / STAMP).write_text(digest + "\n")
