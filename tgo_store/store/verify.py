"""`tgo verify`: every committed block checked against its data and its commit record.

A commit record says a block was written whole; it does not say the bytes are still right. A
block is damaged when its shards are missing (they would read as zeros), a data chunk or
shard index fails its crc32c (``integrity``; stores written before the codec have none),
it holds NaN/Inf (ingest refuses them), or the metadata disagrees with what was committed:
the arrays' dtype and shape, the ``checkpoint`` step and sha256 of its slot, or consolidated
metadata that differs from the arrays' own. ``metadata_damage`` is the cheap part (metadata,
records and a listing; ``store_info`` runs it, so analysis and the loader refuse a damaged
store before reading); ``block_damage`` reads data; re-running the ingest rewrites what either
finds (``plan.missing_blocks`` trusts a commit record only when its block verifies).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zarr

from tgo_store.errors import TgoError
from tgo_store.store import schema as S
from tgo_store.store.commits import read_commits
from tgo_store.store.integrity import (
    DamagedDataError,
    block_name,
    fix_for,
    has_checksums,
    is_checksum_error,
    non_finite,
)
from tgo_store.store.layout import block_shard_keys
from tgo_store.store.location import open_zarr_store, store_records
from tgo_store.store.metadata import interrupted_change, recorded_identity, stale_consolidated
from tgo_store.store.records import RecordStore

BLOCK_ARRAYS = (S.ACTIVATIONS, S.GRADIENTS)


@dataclass(frozen=True)
class Damage:
    """One damaged thing: a block (checkpoint slot and sample block) or the store's metadata."""

    what: str
    problem: str
    checkpoint: int | None = None
    block: int | None = None

    def line(self) -> str:
        return f"{self.what}: {self.problem}"


@dataclass
class Verification:
    """What ``verify_store`` found: blocks checked, whether data carries checksums, and the damage."""

    url: str
    blocks_checked: int
    checksums: bool
    damage: list[Damage] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.damage

    def damaged_blocks(self) -> set[tuple[int, int]]:
        return {(d.checkpoint, d.block) for d in self.damage if d.checkpoint is not None and d.block is not None}


def samples_per_block(group: Any) -> int:
    act = group[S.ACTIVATIONS]
    return int(dict(group.attrs).get("tgo_layout", {}).get("samples_per_block", (act.shards or act.chunks)[2]))


def block_rows(group: Any, block: int) -> tuple[int, int]:
    spb, n = samples_per_block(group), group[S.ACTIVATIONS].shape[2]
    return block * spb, min((block + 1) * spb, n)


def committed_blocks(group: Any, commits: dict[tuple[int, int], dict]) -> list[tuple[int, int]]:
    """(slot, block) of every block whose commit record names its slot's checkpoint."""
    n_ckpt = group[S.ACTIVATIONS].shape[0]
    shas = [str(s) for s in group[S.CHECKPOINT_SHA256][:n_ckpt]] if n_ckpt else []
    return sorted(key for key, record in commits.items()
                  if key[0] < len(shas) and record.get("sha256") == shas[key[0]])


def _arrays(group: Any) -> list[str]:
    return [name for name in BLOCK_ARRAYS if name in group]


def _consolidated_damage(store: Any) -> list[Damage]:
    """Consolidated metadata (what readers see) that differs from the arrays' own zarr.json."""
    return [Damage("metadata", f"the consolidated metadata gives {name} {attr} {seen}, its own zarr.json {own} "
                               "(edited or stale)") for name, attr, seen, own in stale_consolidated(store)]


def _coordinate_damage(group: Any, commits: dict[tuple[int, int], dict]) -> list[Damage]:
    """`checkpoint` steps and sha256 values against what the commit records of their slots name
    (``metadata.repair`` writes the same values back)."""
    n_ckpt = group[S.ACTIVATIONS].shape[0]
    if not n_ckpt:
        return []
    steps = [int(s) for s in group[S.CHECKPOINT][:n_ckpt]]
    shas = [str(s) for s in group[S.CHECKPOINT_SHA256][:n_ckpt]]
    damage = []
    for slot, (step, sha) in sorted(recorded_identity(commits).items()):
        if slot >= n_ckpt:
            continue
        if sha != shas[slot]:
            damage.append(Damage(f"checkpoint {slot}", f"the checkpoint_sha256 coordinate says {shas[slot][:12]}, "
                                                       f"its blocks were written from {sha[:12]}", slot))
        elif step != steps[slot]:
            damage.append(Damage(f"checkpoint {slot}", f"the checkpoint coordinate says step {steps[slot]}, its "
                                                       f"blocks were written as step {step}", slot))
    return damage


def _block_metadata_damage(group: Any, slot: int, block: int, record: dict, present: set[str]) -> list[Damage]:
    """A committed block's shards present, and its arrays' dtype and shape as committed."""
    damage = []
    start, stop = block_rows(group, block)
    for name in _arrays(group):
        array = group[name]
        where = block_name(name, slot, None, [block])
        missing = [key for key in block_shard_keys(array, slot, block) if key not in present]
        if missing:
            layers = sorted({int(key.split("/")[-4]) for key in missing})
            damage.append(Damage(where, f"{len(missing)} shard(s) missing (layers {', '.join(map(str, layers[:6]))}"
                                        f"{' ...' if len(layers) > 6 else ''}); they would read as zeros", slot, block))
        written = record.get("arrays", {}).get(name)
        if written is None:
            continue  # records of stores from before tgo kept dtype and shape
        shape = [array.shape[1], stop - start, *array.shape[3:]]
        if written.get("dtype") != str(array.dtype) or list(written.get("shape", shape)) != shape:
            damage.append(Damage(where, f"the metadata says {array.dtype} {tuple(shape)}, the block was written as "
                                        f"{written.get('dtype')} {tuple(written.get('shape', ()))}", slot, block))
    return damage


def _present(records: RecordStore, group: Any) -> set[str]:
    return {key for name in _arrays(group) for key in records.keys(f"{name}/c")}


def metadata_damage(records: RecordStore, store: Any, group: Any,
                    commits: dict[tuple[int, int], dict] | None = None,
                    only: Iterable[tuple[int, int]] | None = None) -> list[Damage]:
    """Damage found without reading data: metadata, commit records and a listing of the shards."""
    commits = read_commits(records) if commits is None else commits
    damage = _consolidated_damage(store) + _coordinate_damage(group, commits)
    present = _present(records, group)
    chosen = committed_blocks(group, commits) if only is None else sorted(only)
    for slot, block in chosen:
        damage += _block_metadata_damage(group, slot, block, commits[(slot, block)], present)
    return damage


def _read_damage(array: Any, region: tuple) -> str | None:
    """Why reading ``region`` fails verification (checksum, NaN/Inf), or None."""
    try:
        values = np.asarray(array[region])
    except (ValueError, RuntimeError) as exc:
        if not is_checksum_error(exc):
            raise
        return "fails its checksum (the stored bytes changed or the shard is truncated)"
    return "holds NaN/Inf, which ingest never writes" if non_finite(values) else None


def block_damage(group: Any, slot: int, block: int) -> list[Damage]:
    """Read one committed block: checksums and NaN/Inf, named down to the layer."""
    start, stop = block_rows(group, block)
    damage = []
    for name in _arrays(group):
        array = group[name]
        if _read_damage(array, (slot, slice(None), slice(start, stop))) is None:
            continue
        for layer in range(array.shape[1]):  # the block is damaged: name each layer
            problem = _read_damage(array, (slot, layer, slice(start, stop)))
            if problem:
                damage.append(Damage(block_name(name, slot, layer, [block]), problem, slot, block))
    return damage


def open_activation_group(store: Any, url: str, records: RecordStore) -> Any:
    """The group and its activations array, read only; a half-made or foreign store refused in one line."""
    change = interrupted_change(records)
    if change == "creating":
        raise TgoError(f"store {url} was cut short while being created; re-run the `tgo ingest` that "
                       "created it (it starts the store again), or delete the folder")
    try:
        group = zarr.open_group(store, mode="r")
        return group, group[S.ACTIVATIONS]
    except (FileNotFoundError, KeyError) as exc:
        raise TgoError(f"no tgo store at {url}; check the URL or run `tgo ingest` first") from exc
    except (ValueError, TypeError) as exc:  # a corrupt zarr.json, or JSON that is not Zarr metadata
        raise TgoError(f"{url} holds unreadable Zarr metadata ({type(exc).__name__}: {str(exc)[:120]}); "
                       "restore its zarr.json files or ingest into a new store") from exc


def open_for_verify(url: str, storage_options: dict | None = None) -> tuple[RecordStore, Any, Any]:
    """(records, zarr store, group) of an activation store, read only; TgoError when it is none."""
    records = store_records(url, storage_options)
    store = open_zarr_store(url, read_only=True, storage_options=storage_options)
    group, _act = open_activation_group(store, url, records)
    S.check_schema_version(dict(group.attrs), f"store {url}")
    return records, store, group


def verify_store(url: str, *, storage_options: dict | None = None, data: bool = True) -> Verification:
    """Check every committed block of the store at ``url`` (``data``: read it too, else metadata only)."""
    records, store, group = open_for_verify(url, storage_options)
    commits = read_commits(records)
    chosen = committed_blocks(group, commits)
    damage = metadata_damage(records, store, group, commits, chosen)
    known = {(d.checkpoint, d.block) for d in damage}
    if data:
        for slot, block in chosen:
            if (slot, block) not in known:  # a missing shard reads as zeros: nothing more to learn by reading
                damage += block_damage(group, slot, block)
    return Verification(url, len(chosen), has_checksums(group[S.ACTIVATIONS]), damage)


def damage_summary(result: Verification) -> str:
    """The last line `tgo verify` prints: what was checked, and the fix when something is damaged."""
    checked = f"{result.blocks_checked} committed block(s) of {result.url}"
    sums = "" if result.checksums else " (written before data checksums: bit flips in it cannot be detected)"
    if result.ok:
        return f"{checked} verified: no damage{sums}"
    blocks = len(result.damaged_blocks())
    return (f"{len(result.damage)} problem(s), {blocks} damaged block(s) in {checked}{sums}; re-run the `tgo ingest` "
            "that wrote the store: it rewrites exactly the damaged blocks (and repairs the metadata)")


def refuse_damage(url: str, damage: Sequence[Damage]) -> None:
    """Refuse to read a store whose metadata check found damage (``StoreInfo.damage``), in one line."""
    if damage:
        more = f" (and {len(damage) - 1} more)" if len(damage) > 1 else ""
        raise DamagedDataError(f"store {url} is damaged: {damage[0].line()}{more}; {fix_for(url)}")


def untrusted_blocks(url: str, storage_options: dict | None, blocks: Sequence[tuple[int, int]]) -> set[tuple[int, int]]:
    """Of these committed (slot, block) pairs, those whose data does not verify (rewritten by ingest)."""
    if not blocks:
        return set()
    records, store, group = open_for_verify(url, storage_options)
    commits = read_commits(records)
    blocks = [b for b in blocks if b in commits]
    bad = {(d.checkpoint, d.block) for d in metadata_damage(records, store, group, commits, blocks)}
    for slot, block in blocks:
        if (slot, block) not in bad and block_damage(group, slot, block):
            bad.add((slot, block))
    return bad
