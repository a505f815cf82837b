"""The proteins of a fold run: :class:`Target`, normalising ``fold``'s inputs, reading input files.

A :class:`Target` is one single-chain protein with a file-system safe name that is unique within
the run (outputs and PRNG keys are derived from it). :func:`as_targets` accepts strings,
``(name, sequence)`` pairs, FASTA records or targets; :func:`read_targets` reads FASTA input
leniently (a bad record becomes a target carrying its error, so a run folds the good ones and
reports the bad one); :func:`check_target` refuses what the model cannot fold.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from simplefold.predict import outputs


class TargetError(ValueError):
    """A target cannot be folded (empty, several chains, too long for the budget); names the target."""


class OutputSpaceError(OSError):
    """The output (or cache) file system is full: the run stops (every later target would fail too).

    Nothing of the target being written is kept (its files go to a temporary directory first); the
    targets finished before stay complete, so the same command resumes once space is freed.
    """


@dataclasses.dataclass(frozen=True)
class Target:
    """One protein to fold.

    Attributes:
      name: file-system safe, unique within a run (used for output names and PRNG keys).
      sequence: one-letter sequence (upper case, whitespace removed).
      description: FASTA header text after the name, if any.
      source: where it came from (``file:line``) for error messages, if known.
    """

    name: str
    sequence: str
    description: str = ""
    source: str | None = None
    error: str | None = None  # an input problem found while reading (bad FASTA record)


def _target_fields(item: Any, index: int) -> tuple[str, str, str, str | None, str | None]:
    if isinstance(item, Target):
        return item.name, item.sequence, item.description, item.source, item.error
    if isinstance(item, str):
        return f"seq_{index}", item, "", None, None
    if isinstance(item, (tuple, list)) and len(item) == 2 and all(isinstance(x, str) for x in item):
        return item[0], item[1], "", None, None
    if hasattr(item, "sequence") and hasattr(item, "name"):  # a simplefold.io.fasta.FastaRecord
        path, line = getattr(item, "path", None), getattr(item, "line", None)
        source = f"{path}:{line}" if path is not None and line is not None else (str(path) if path else None)
        chains = tuple(getattr(item, "chains", ()) or ())
        # FastaRecord.sequence drops ':'; keep the chain break so check_target can refuse it
        sequence = ":".join(chains) if len(chains) > 1 else str(item.sequence)
        return str(item.name), sequence, str(getattr(item, "description", "") or ""), source, None
    raise TypeError(
        f"sequence #{index}: expected a string, a (name, sequence) pair, a FastaRecord or a Target, "
        f"got {type(item).__name__}"
    )


def as_targets(sequences: Any) -> list[Target]:
    """Normalise ``fold``'s ``sequences`` argument to a list of :class:`Target` with unique safe names.

    A single string or pair is one target. Sequences are upper-cased with whitespace removed; they
    are *not* validated here (see :func:`check_target`) so that one bad record cannot stop a run.
    """
    if isinstance(sequences, (str, Target)) or (
        isinstance(sequences, tuple) and len(sequences) == 2 and all(isinstance(x, str) for x in sequences)
    ):
        sequences = [sequences]
    items = [_target_fields(item, i) for i, item in enumerate(sequences)]
    names = outputs.unique_names(name for name, *_ in items)
    return [
        Target(name=n, sequence="".join(seq.split()).upper(), description=desc, source=src, error=err)
        for n, (_, seq, desc, src, err) in zip(names, items)
    ]


def read_targets(inp: str | os.PathLike) -> list[Target]:
    """Targets of a FASTA file, a folder of FASTA files (recursive) or a bare sequence, leniently.

    Files and folders are read with :func:`simplefold.io.fasta.iter_sequences`: every good record is
    kept and a bad one (no residues, bad letters, a duplicate name, ...) becomes a :class:`Target`
    with ``error`` set to the reader's message (with the line in the file), so a run can fold the
    good ones and report the bad one. File-level problems (unreadable, binary, no records) and a
    bad bare sequence or FASTA text still raise ``FastaError``.
    """
    from simplefold.io import fasta

    try:
        is_path = Path(os.fspath(inp)).exists()
    except OSError:  # e.g. a bare sequence longer than a file name may be (ENAMETOOLONG)
        is_path = False
    if not is_path:  # a bare sequence or FASTA text: strict
        return as_targets(fasta.read_sequences(inp))
    return as_targets(
        [_bad_record_target(item) if isinstance(item, fasta.FastaError) else item for item in fasta.iter_sequences(inp)]
    )


def _bad_record_target(exc) -> Target:
    """A target standing for a bad FASTA record (a ``FastaError`` from the lenient reader)."""
    header_line = exc.header_line if exc.header_line is not None else exc.line
    name = exc.record if exc.record != "(none)" else f"{Path(exc.source).stem}_line{header_line}"
    reason = f"{exc.source}:{exc.line}: record '{name}': {exc.reason}"
    return Target(name, "", exc.description, f"{exc.source}:{header_line}", reason)


def unknown_residues(sequence: str) -> list[str]:
    """Letters the model reads as UNK (X, B, Z, J, O, U), as ``"<letter><position>"`` (1-based)."""
    from simplefold import residues

    return [f"{c}{i}" for i, c in enumerate(sequence.upper(), 1) if c in residues.UNKNOWN_LETTERS]


def check_target(target: Target) -> None:
    """Raise :class:`TargetError` for a target the model cannot fold (empty, or several chains)."""
    where = f" ({target.source})" if target.source else ""
    if target.error:
        raise TargetError(target.error)
    if not target.sequence:
        raise TargetError(f"{target.name}{where}: empty sequence")
    if ":" in target.sequence:
        raise TargetError(
            f"{target.name}{where}: several chains (':') are not supported; SimpleFold folds single chains "
            "(it was trained on monomers)"
        )

