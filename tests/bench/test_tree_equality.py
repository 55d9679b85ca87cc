"""benchmarks.tree_equality's comparison: decoded arrays of two Zarr groups, against numpy by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr

from benchmarks.tree_equality import cli_module, compare_stores

ROOT = Path(__file__).resolve().parents[2]


def _group(path: Path, arrays: dict[str, np.ndarray], codec: bool) -> Path:
    group = zarr.open_group(str(path), mode="w", zarr_format=3)
    for name, values in arrays.items():
        kwargs = {"compressors": None} if not codec else {}  # different bytes, equal decoded values
        group.create_array(name, data=values, chunks=values.shape, **kwargs)
    return path


def test_compare_stores_reports_differences_by_array(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    same, moved = rng.standard_normal((3, 4)), rng.standard_normal(5) + 10
    words = np.array(["a", "bb"], dtype=np.dtypes.StringDType())  # a non-numeric variable: equal or not
    nudged = moved.copy()
    nudged[2] *= 1 + 1e-6
    gaps = same.copy()
    gaps[1, 1] = np.nan
    old = _group(tmp_path / "old.zarr", {"same": same, "moved": moved, "gaps": same, "words": words,
                                         "gone": same}, codec=False)
    new = _group(tmp_path / "new.zarr", {"same": same, "moved": nudged, "gaps": gaps, "words": words[::-1].copy(),
                                         "added": same}, codec=True)
    out = compare_stores(old, new)
    assert out["only_old"] == ["gone"] and out["only_new"] == ["added"]
    assert out["different"] == ["gaps", "moved", "words"]
    assert out["variables"]["same"]["max_abs"] == 0.0 and out["variables"]["same"]["equal"]
    rel = np.abs(nudged - moved) / np.maximum(np.abs(nudged), np.abs(moved))
    assert np.isclose(out["variables"]["moved"]["max_rel"], rel.max(), rtol=1e-9)
    assert np.isclose(out["variables"]["moved"]["max_abs"], np.abs(nudged - moved).max(), rtol=1e-9)
    assert out["variables"]["gaps"]["nan_mismatch"] == 1 and out["variables"]["gaps"]["max_abs"] == 0.0


def test_cli_module_follows_the_tree_layout(tmp_path: Path) -> None:
    assert cli_module(ROOT) == "tgo_app.cli"
    assert cli_module(tmp_path) == "tgo_analysis.orchestration.cli"  # a tree from before issue 28
