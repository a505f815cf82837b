"""Output layout of ``simplefold predict``: per-target folders, summary.json, pLDDT plot, manifests.

Layout of an output directory ``OUT``::

    OUT/
      manifest.jsonl                      one JSON line per target and attempt (unsharded run)
      manifest.shard-I-of-N.jsonl         the same for shard I of N (``--shard I/N``)
      <target>/
        <target>_sample_<k>.<pdb|cif>     sample k = 0..S-1 (pLDDT x 100 in the B-factor column)
        <target>_ensemble.<pdb|cif>       all samples as models 1..S (only when S > 1)
        <target>_plddt.png                per-residue pLDDT of every sample (when pLDDT is on)
        <target>_confidences.json         AF3-style per-residue and per-atom pLDDT, mean and rank of
                                          every sample (when pLDDT is on; :mod:`simplefold.predict.confidences`)
        <target>_ranking_scores.csv       seed,sample,ranking_score,rank,file: best sample first (pLDDT on)
        summary.json                      written LAST: its presence marks the target complete

Every file is written atomically (:func:`simplefold.utils.files.atomic_open`), so an interrupted
run never leaves a truncated file behind, and
``summary.json`` existing means every other file of the target exists too. Resuming a run
therefore only needs :func:`is_complete`.

Manifest lines are appended (:func:`simplefold.utils.files.append_jsonl`) as soon as a target
finishes, so a killed run keeps the record of what it did. A target may appear several times
(one line per attempt); the **last** line of a target is its state. :func:`merge_manifests`
folds every ``manifest*.jsonl`` of ``OUT`` into one line per target.

Nothing here imports jax or matplotlib (the pLDDT plot is drawn by :func:`simplefold.plots.plot_plddt`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from simplefold.utils.files import atomic_write_text, json_default, read_jsonl

logger = logging.getLogger(__name__)

#: Structure formats of the sample files, and the default.
FORMATS = ("pdb", "cif")
DEFAULT_FORMAT = "pdb"
SUMMARY_NAME = "summary.json"
MANIFEST_NAME = "manifest.jsonl"
#: Version of the summary.json layout (bumped when fields change meaning).
SUMMARY_VERSION = 1
STATUS_OK = "ok"
STATUS_FAILED = "failed"
STATUS_SKIPPED = "skipped"  # already complete from an earlier run

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


# --------------------------------------------------------------------------------------
# Target names and paths
# --------------------------------------------------------------------------------------


def safe_name(name: str) -> str:
    """A file-system safe target name: runs of characters outside ``[A-Za-z0-9._-]`` become ``_``.

    Leading dots are stripped (no hidden folders); an empty result becomes ``target``.
    """
    out = _UNSAFE.sub("_", name.strip()).lstrip(".")
    return out[:120] or "target"


def unique_names(names: Iterable[str]) -> list[str]:
    """:func:`safe_name` of each name, with ``_2``, ``_3``, ... appended to repeats (order kept)."""
    seen: dict[str, int] = {}
    taken: set[str] = set()
    out = []
    for name in names:
        base = safe_name(name)
        cand = base
        while cand in taken:
            seen[base] = seen.get(base, 1) + 1
            cand = f"{base}_{seen[base]}"
        taken.add(cand)
        out.append(cand)
    return out


@dataclasses.dataclass(frozen=True)
class TargetPaths:
    """Where the files of one target go (``root / name``); ``ext`` is ``pdb`` or ``cif``."""

    root: Path
    name: str
    ext: str = DEFAULT_FORMAT

    @property
    def dir(self) -> Path:
        return self.root / self.name

    def _file(self, suffix: str) -> Path:
        return self.dir / f"{self.name}_{suffix}"

    def sample(self, k: int) -> Path:
        return self._file(f"sample_{k}.{self.ext}")

    @property
    def ensemble(self) -> Path:
        return self._file(f"ensemble.{self.ext}")

    @property
    def plddt_png(self) -> Path:
        return self._file("plddt.png")

    @property
    def confidences(self) -> Path:
        return self._file("confidences.json")

    @property
    def ranking(self) -> Path:
        return self._file("ranking_scores.csv")

    @property
    def summary(self) -> Path:
        return self.dir / SUMMARY_NAME


def is_complete(paths: TargetPaths) -> bool:
    """True when ``summary.json`` exists, parses, and every file it lists exists.

    summary.json is written last, so a target interrupted mid-way is never reported complete; a
    summary whose files were later deleted by hand is not complete either.
    """
    try:
        summary = json.loads(paths.summary.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    files = summary.get("files", {})
    listed = list(files.get("samples", [])) + [f for k, f in files.items() if k != "samples" and f]
    return all((paths.dir / f).is_file() for f in listed)


# --------------------------------------------------------------------------------------
# Manifests
# --------------------------------------------------------------------------------------


def manifest_path(root: str | os.PathLike, shard: tuple[int, int] | None = None) -> Path:
    """``OUT/manifest.jsonl``, or ``OUT/manifest.shard-I-of-N.jsonl`` for shard ``(I, N)`` (1-based I)."""
    root = Path(root)
    if shard is None:
        return root / MANIFEST_NAME
    i, n = shard
    return root / f"manifest.shard-{i}-of-{n}.jsonl"


def manifest_files(root: str | os.PathLike) -> list[Path]:
    """Every ``manifest*.jsonl`` in ``root`` (the unsharded one first, shards in name order)."""
    root = Path(root)
    files = sorted(root.glob("manifest.shard-*-of-*.jsonl"))
    main = root / MANIFEST_NAME
    return ([main] if main.is_file() else []) + files


def latest_by_target(entries: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Last entry per target (by ``time``; ties keep file order). A ``skipped`` line never hides an
    earlier ``ok`` line's details but counts as ok."""
    out: dict[str, dict[str, Any]] = {}
    for e in sorted(entries, key=lambda e: e.get("time", 0.0)):
        name = e.get("target")
        if name is None:
            continue
        if e.get("status") == STATUS_SKIPPED and out.get(name, {}).get("status") == STATUS_OK:
            continue
        out[name] = dict(e)
    return out


@dataclasses.dataclass(frozen=True)
class RunReport:
    """State of a whole run after merging manifests."""

    entries: dict[str, dict[str, Any]]  # target -> last entry
    missing: tuple[str, ...]  # expected targets with no entry at all

    @property
    def ok(self) -> list[str]:
        return [t for t, e in self.entries.items() if e.get("status") in (STATUS_OK, STATUS_SKIPPED)]

    @property
    def failed(self) -> list[str]:
        return [t for t, e in self.entries.items() if e.get("status") == STATUS_FAILED]

    @property
    def success(self) -> bool:
        return not self.failed and not self.missing


def merge_manifests(
    root: str | os.PathLike, expected: Sequence[str] | None = None, *, write: bool = True
) -> RunReport:
    """Fold every manifest of ``root`` into one entry per target.

    Args:
      root: the output directory.
      expected: target names the run should have produced (to report missing ones); when None,
        only the targets found in manifests are reported.
      write: rewrite ``root/manifest.jsonl`` (atomically) with one line per target, in
        ``expected`` order when given, else by name.

    Returns:
      a :class:`RunReport`.
    """
    root = Path(root)
    entries: list[dict[str, Any]] = []
    for f in manifest_files(root):
        entries.extend(read_jsonl(f))
    latest = latest_by_target(entries)
    missing = tuple(t for t in (expected or ()) if t not in latest)
    order = list(expected) if expected is not None else sorted(latest)
    order += sorted(t for t in latest if t not in set(order))
    merged = {t: latest[t] for t in order if t in latest}
    if write and (merged or manifest_files(root)):
        text = "".join(json.dumps(e, default=json_default) + "\n" for e in merged.values())
        atomic_write_text(root / MANIFEST_NAME, text)
    return RunReport(entries=merged, missing=missing)


# --------------------------------------------------------------------------------------
# Sharding of the target list
# --------------------------------------------------------------------------------------


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` (1-based, 1 <= I <= N) -> ``(I, N)``; raise ValueError with a clear message."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m:
        raise ValueError(f"--shard must look like I/N (e.g. 2/8), got {text!r}")
    i, n = int(m.group(1)), int(m.group(2))
    if n < 1 or not 1 <= i <= n:
        raise ValueError(f"--shard {text}: need 1 <= I <= N")
    return i, n


def shard_indices(names: Sequence[str], shard: tuple[int, int] | None) -> list[int]:
    """Indices of the targets that belong to ``shard`` = (I, N).

    The names are sorted and dealt round-robin (sorted position p goes to shard 1 + p mod N), so
    the split depends only on the set of target names (not on file order or machine), shards
    differ in size by at most one, and every target lands in exactly one shard.
    """
    if shard is None:
        return list(range(len(names)))
    i, n = shard
    order = sorted(range(len(names)), key=lambda j: (names[j], j))
    mine = {j for p, j in enumerate(order) if p % n == i - 1}
    return [j for j in range(len(names)) if j in mine]
