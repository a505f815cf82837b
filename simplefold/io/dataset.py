"""Prepared training datasets: ``prepare-data`` (structure files -> compact per-chain arrays) and access.

On-disk layout of a prepared dataset ``OUT/``::

    OUT/manifest.jsonl          one JSON line per input file: status ("ok" | "error" | "no_records"),
                                reason, and the records (chains) it produced or skipped
    OUT/chains/<id>.npz         one file per kept chain: res_names (L,) <U3, res_ids (L,) int32,
                                coords (A, 3) float32 Å (0 where absent), atom_mask (A,) bool
    OUT/summary.json            counts of the last run

Only the compact raw arrays are stored; features (:mod:`simplefold.features`) are built on the fly
by the training loader (:mod:`simplefold.training.loader`) after cropping, so one dataset serves
every crop size and model. The atom layout is the official heavy-atom template order, so atom names/elements are implied by ``res_names``.

Re-running ``prepare_dataset`` on the same ``OUT`` skips every file already listed in the
manifest (resume after an interruption); a crash while writing loses at most the lines in flight.
"""

from __future__ import annotations

import concurrent.futures
import csv
import dataclasses
import json
import multiprocessing
import logging
import os
import pathlib
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from simplefold import residues
from simplefold.io.structure import structure_stem
from simplefold.utils.files import atomic_open, read_jsonl

logger = logging.getLogger(__name__)

MANIFEST = "manifest.jsonl"
SUMMARY = "summary.json"
CHAINS_DIR = "chains"


@dataclasses.dataclass(frozen=True)
class PrepareOptions:
    """Chain filters of ``prepare-data``.

    Attributes:
      min_length / max_length: residue count range (inclusive); ``max_length=None`` = no limit.
      min_resolved_fraction: minimum fraction of residues whose CA is present.
      max_unknown_fraction: chains with more UNK residues than this are treated as non-protein.
      model: 1-based model read from multi-model (NMR) files.
    """

    min_length: int = 20
    max_length: int | None = None
    min_resolved_fraction: float = 0.5
    max_unknown_fraction: float = 0.5
    model: int = 1


@dataclasses.dataclass(frozen=True)
class ChainRecord:
    """Metadata of one prepared chain (one line item of the manifest)."""

    id: str
    file: str
    chain: str
    length: int
    num_atoms: int
    resolved_fraction: float
    sequence: str
    resolution: float | None = None
    method: str | None = None
    split: str | None = None
    cluster: str | None = None

    @property
    def npz_name(self) -> str:
        return f"{CHAINS_DIR}/{self.id}.npz"


# --------------------------------------------------------------------------------------
# Split CSV
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SplitTable:
    """``file,chain,...,split`` rows (``split.csv`` of the shared data), keyed by resolved path."""

    by_path: Mapping[tuple[str, str], tuple[str, str | None]]
    by_name: Mapping[tuple[str, str], tuple[str, str | None]]
    files: frozenset[str]
    names: frozenset[str]

    def lookup(self, path: pathlib.Path, chain: str) -> tuple[str, str | None] | None:
        """(split, cluster) of a chain, by absolute path first, then by file name."""
        hit = self.by_path.get((str(path.resolve()), chain))
        if hit is None:
            hit = self.by_name.get((path.name, chain))
        return hit

    def has_file(self, path: pathlib.Path) -> bool:
        return str(path.resolve()) in self.files or path.name in self.names


def read_split_csv(path: str | pathlib.Path) -> SplitTable:
    """Parse a split CSV with columns ``file``, ``chain`` and ``split`` (``cluster40`` optional).

    ``file`` is relative to the CSV's directory (or absolute). Raises ValueError naming the file and
    line on a malformed row.
    """
    path = pathlib.Path(path)
    by_path: dict[tuple[str, str], tuple[str, str | None]] = {}
    by_name: dict[tuple[str, str], tuple[str, str | None]] = {}
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"file", "chain", "split"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
        for lineno, row in enumerate(reader, start=2):
            if not row["file"] or not row["split"]:
                raise ValueError(f"{path}:{lineno}: empty file or split")
            f = pathlib.Path(row["file"])
            f = f if f.is_absolute() else path.parent / f
            value = (row["split"].strip(), (row.get("cluster40") or row.get("cluster") or None))
            chain = (row["chain"] or "").strip()
            by_path[(str(f.resolve()), chain)] = value
            by_name[(f.name, chain)] = value
    return SplitTable(
        by_path=by_path,
        by_name=by_name,
        files=frozenset(k[0] for k in by_path),
        names=frozenset(k[0] for k in by_name),
    )


# --------------------------------------------------------------------------------------
# prepare-data
# --------------------------------------------------------------------------------------


def find_structure_files(inputs: Iterable[str | pathlib.Path]) -> list[pathlib.Path]:
    """Structure files (PDB/mmCIF/BinaryCIF, optionally .gz) under the given files/directories, sorted."""
    found: list[pathlib.Path] = []
    for item in inputs:
        p = pathlib.Path(item)
        if p.is_dir():
            found.extend(sorted(f for f in p.rglob("*") if f.is_file() and structure_stem(f) is not None))
        elif p.is_file():
            found.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or directory")
    unique = {str(f.resolve()): f for f in found}
    return [unique[k] for k in sorted(unique)]


def _record_id(path: pathlib.Path, chain: str, used: set[str]) -> str:
    stem = path.name
    for suffix in (".gz", ".bcif", ".cif", ".mmcif", ".pdb", ".ent"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
    parent = re.sub(r"[^A-Za-z0-9_.-]", "_", path.parent.name)
    base = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{parent}__{stem}_{chain or '_'}")
    rid, k = base, 1
    while rid in used:
        k += 1
        rid = f"{base}~{k}"
    used.add(rid)
    return rid


def _process_file(
    path_str: str, out_dir: str, options: PrepareOptions, split: SplitTable | None
) -> dict[str, Any]:
    """Worker: parse one file and write the kept chains. Never raises for bad input."""
    from simplefold.io.structure import StructureError, read_structure

    path = pathlib.Path(path_str)
    entry: dict[str, Any] = {"file": str(path), "status": "ok", "reason": None, "records": [], "skipped": []}
    try:
        structure = read_structure(path, model=options.model)
    except StructureError as exc:
        entry.update(status="error", reason=str(exc))
        return entry
    except Exception as exc:  # noqa: BLE001 - a bad file must never abort a long preparation run
        entry.update(status="error", reason=f"{path}: {type(exc).__name__}: {exc}")
        return entry

    used: set[str] = set()
    for chain in structure.chains:
        cid = chain.chain_id
        split_name = cluster = None
        if split is not None:
            hit = split.lookup(path, cid)
            if hit is None:
                entry["skipped"].append({"chain": cid, "reason": "not in split"})
                continue
            split_name, cluster = hit
        length = chain.num_residues
        _, ca_mask = chain.atom_coords("CA")
        resolved_fraction = float(ca_mask.mean()) if length else 0.0
        unknown_fraction = sum(r == "UNK" for r in chain.res_names) / max(length, 1)
        reason = None
        if unknown_fraction > options.max_unknown_fraction:
            reason = f"non-protein ({unknown_fraction:.0%} unknown residues)"
        elif length < options.min_length:
            reason = f"too short ({length} < {options.min_length} residues)"
        elif options.max_length is not None and length > options.max_length:
            reason = f"too long ({length} > {options.max_length} residues)"
        elif resolved_fraction < options.min_resolved_fraction:
            reason = f"resolved fraction {resolved_fraction:.2f} < {options.min_resolved_fraction}"
        if reason is not None:
            entry["skipped"].append({"chain": cid, "reason": reason})
            continue
        record = ChainRecord(
            id=_record_id(path, cid, used),
            file=str(path),
            chain=cid,
            length=length,
            num_atoms=chain.num_atoms,
            resolved_fraction=round(resolved_fraction, 4),
            sequence=chain.sequence,
            resolution=structure.resolution,
            method=structure.method,
            split=split_name,
            cluster=cluster,
        )
        with atomic_open(pathlib.Path(out_dir) / record.npz_name, "wb") as fh:
            np.savez(
                fh,
                res_names=np.asarray(chain.res_names, dtype="<U3"),
                res_ids=np.asarray(chain.res_ids, np.int32),
                coords=np.asarray(chain.coords, np.float32),
                atom_mask=np.asarray(chain.atom_mask, bool),
            )
        entry["records"].append(dataclasses.asdict(record))
    if not entry["records"]:
        entry["status"] = "no_records"
        entry["reason"] = "; ".join(f"{s['chain'] or '<blank>'}: {s['reason']}" for s in entry["skipped"]) or (
            "no protein chain"
        )
    return entry


def read_manifest(out_dir: str | pathlib.Path) -> list[dict[str, Any]]:
    """Entries of ``OUT/manifest.jsonl`` (a truncated last line from a crash is ignored)."""
    return read_jsonl(pathlib.Path(out_dir) / MANIFEST)


@dataclasses.dataclass(frozen=True)
class PrepareSummary:
    """Counts of a ``prepare_dataset`` run (over the whole manifest, resumed files included)."""

    files: int
    files_ok: int
    files_error: int
    files_no_records: int
    files_resumed: int
    records: int
    records_by_split: Mapping[str, int]
    skipped_chains_by_reason: Mapping[str, int]
    errors: Sequence[str]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _reason_class(reason: str) -> str:
    return re.sub(r"\s*\(.*\)|\s[\d.]+.*$", "", reason)


def prepare_dataset(
    inputs: Sequence[str | pathlib.Path],
    out_dir: str | pathlib.Path,
    *,
    split_csv: str | pathlib.Path | None = None,
    options: PrepareOptions = PrepareOptions(),
    workers: int | None = None,
    progress: bool = True,
) -> PrepareSummary:
    """Parse structure files in parallel into a prepared dataset (see module docstring).

    Args:
      inputs: files and/or directories (searched recursively).
      out_dir: output directory (created; an existing manifest is resumed).
      split_csv: optional split table; chains not in it are skipped (files with no listed chain are
        not even parsed) and kept records carry their ``split`` and ``cluster``.
      options: chain filters.
      workers: worker processes (default: CPU count).
      progress: show a tqdm progress bar.

    Returns:
      :class:`PrepareSummary` over the whole manifest.
    """
    out = pathlib.Path(out_dir)
    (out / CHAINS_DIR).mkdir(parents=True, exist_ok=True)
    split = read_split_csv(split_csv) if split_csv is not None else None
    files = find_structure_files(inputs)
    done = {e["file"] for e in read_manifest(out)}
    todo, not_listed = [], []
    for f in files:
        if str(f) in done:
            continue
        if split is not None and not split.has_file(f):
            not_listed.append(f)
            continue
        todo.append(f)
    resumed = sum(str(f) in done for f in files)
    if resumed:
        logger.info("resuming: %d of %d files already in %s", resumed, len(files), out / MANIFEST)

    from tqdm import tqdm

    workers = workers or os.cpu_count() or 1
    manifest_path = out / MANIFEST
    if manifest_path.exists() and manifest_path.stat().st_size:
        with open(manifest_path, "rb") as fh:
            fh.seek(-1, os.SEEK_END)
            torn = fh.read(1) != b"\n"
        if torn:  # a crash mid-line: terminate it so the next entry starts on its own line
            with open(manifest_path, "a") as fh:
                fh.write("\n")
    with open(manifest_path, "a") as manifest:
        for f in not_listed:
            entry = {"file": str(f), "status": "no_records", "reason": "file not in split", "records": [], "skipped": []}
            manifest.write(json.dumps(entry) + "\n")
        manifest.flush()
        bar = tqdm(total=len(todo), desc="prepare-data", unit="file", disable=not progress)
        # spawn, not fork: the parent may have started JAX's threads, and forking them can deadlock.
        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            futures = {pool.submit(_process_file, str(f), str(out), options, split): f for f in todo}
            for fut in concurrent.futures.as_completed(futures):
                try:
                    entry = fut.result()
                except Exception as exc:  # noqa: BLE001 - e.g. a worker killed by the OOM killer
                    f = futures[fut]
                    entry = {"file": str(f), "status": "error", "reason": f"{f}: worker failed: {exc}",
                             "records": [], "skipped": []}
                manifest.write(json.dumps(entry) + "\n")
                manifest.flush()
                bar.update(1)
        bar.close()

    summary = summarize(out)
    summary = dataclasses.replace(summary, files_resumed=resumed)
    (out / SUMMARY).write_text(json.dumps(summary.to_dict(), indent=2) + "\n")
    return summary


def summarize(out_dir: str | pathlib.Path) -> PrepareSummary:
    """Counts over the manifest of a prepared dataset."""
    entries = read_manifest(out_dir)
    by_status: dict[str, int] = {}
    by_split: dict[str, int] = {}
    by_reason: dict[str, int] = {}
    errors = []
    n_records = 0
    for e in entries:
        by_status[e["status"]] = by_status.get(e["status"], 0) + 1
        if e["status"] == "error":
            errors.append(e["reason"])
        for r in e["records"]:
            n_records += 1
            key = r.get("split") or "unassigned"
            by_split[key] = by_split.get(key, 0) + 1
        for s in e["skipped"]:
            key = _reason_class(s["reason"])
            by_reason[key] = by_reason.get(key, 0) + 1
        if e["status"] == "no_records" and e["reason"] == "file not in split":
            by_reason["file not in split"] = by_reason.get("file not in split", 0) + 1
    return PrepareSummary(
        files=len(entries),
        files_ok=by_status.get("ok", 0),
        files_error=by_status.get("error", 0),
        files_no_records=by_status.get("no_records", 0),
        files_resumed=0,
        records=n_records,
        records_by_split=dict(sorted(by_split.items())),
        skipped_chains_by_reason=dict(sorted(by_reason.items())),
        errors=errors,
    )


# --------------------------------------------------------------------------------------
# Reading a prepared dataset
# --------------------------------------------------------------------------------------


def load_records(
    data_dir: str | pathlib.Path,
    split: str | None = None,
    *,
    min_length: int = 1,
    max_length: int | None = None,
) -> list[ChainRecord]:
    """Records of a prepared dataset, in a stable order (sorted by id), filtered without loading arrays.

    Args:
      data_dir: output of :func:`prepare_dataset`.
      split: keep only records of this split (None = all).
      min_length / max_length: residue-count filter.

    Raises:
      FileNotFoundError: ``data_dir`` has no manifest.
    """
    data_dir = pathlib.Path(data_dir)
    if not (data_dir / MANIFEST).exists():
        raise FileNotFoundError(f"{data_dir}: not a prepared dataset (no {MANIFEST}); run `simplefold prepare-data`")
    fields = {f.name for f in dataclasses.fields(ChainRecord)}
    records = []
    for entry in read_manifest(data_dir):
        for r in entry["records"]:
            rec = ChainRecord(**{k: v for k, v in r.items() if k in fields})
            if split is not None and rec.split != split:
                continue
            if rec.length < min_length or (max_length is not None and rec.length > max_length):
                continue
            records.append(rec)
    records.sort(key=lambda r: r.id)
    return records


def load_chain(data_dir: str | pathlib.Path, record: ChainRecord):
    """Rebuild the :class:`simplefold.io.structure.Chain` of a record from its ``.npz``.

    Raises:
      ValueError: the file is missing or its arrays do not match the residue templates (names it).
    """
    from simplefold.io.structure import Chain

    path = pathlib.Path(data_dir) / record.npz_name
    try:
        with np.load(path) as z:
            res_names = tuple(str(x) for x in z["res_names"])
            res_ids, coords, atom_mask = z["res_ids"], z["coords"], z["atom_mask"]
    except (OSError, KeyError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read prepared chain ({exc})") from exc
    templates = residues.residue_templates()
    tpls = [templates.get(rn, templates["UNK"]) for rn in res_names]
    atom_names = tuple(n for t in tpls for n in t.atom_names)
    if len(atom_names) != len(coords):
        raise ValueError(f"{path}: {len(coords)} atoms stored, templates of its residues have {len(atom_names)}")
    return Chain(
        chain_id=record.chain,
        res_names=res_names,
        res_ids=res_ids,
        ins_codes=("",) * len(res_names),
        atom_names=atom_names,
        elements=tuple(e for t in tpls for e in t.elements),
        atom_residue=np.repeat(np.arange(len(tpls)), [t.num_atoms for t in tpls]),
        coords=coords,
        atom_mask=atom_mask,
        occupancy=atom_mask.astype(np.float32),
        b_factors=np.zeros(len(coords), np.float32),
    )


def iter_chains(data_dir: str | pathlib.Path, records: Iterable[ChainRecord]) -> Iterator:
    """Yield ``(record, Chain)`` pairs."""
    for rec in records:
        yield rec, load_chain(data_dir, rec)
