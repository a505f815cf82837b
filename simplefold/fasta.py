"""FASTA parsing for prediction inputs, strict enough to catch user mistakes with a precise message.

Accepted: several records, ``;`` and ``#`` comment lines, blank lines, lower case, wrapped sequence
lines, whitespace inside sequence lines, Windows/old-Mac line endings, a UTF-8 byte-order mark, a
trailing ``*`` (stop) at the end of a record or of a chain, and ``:`` as a chain separator (kept in
:attr:`FastaRecord.chains`; later steps decide what to do with several chains).

Valid residue letters are all 26 upper-case letters: the 20 amino acids plus ``X B Z J U O``, which
(as in the official code) are read as ``UNK``. Refused, each with a one-line :class:`FastaError`
``"<file>:<line>: record '<name>': <reason>"``: sequence data before the first header, an empty
header name, a record without residues, digits or punctuation (including the alignment gap ``-``
and ``.``: these are prediction inputs, not alignments), ``*`` inside a sequence, an empty chain
between ``:`` separators, duplicate record names (compared case-insensitively because the names
become file names), an empty file or one without records, binary or non-UTF-8 content, and
records longer than :data:`MAX_SEQUENCE_LENGTH` residues.
"""

from __future__ import annotations

import os
import pathlib
import re
from dataclasses import dataclass

from simplefold import residues

__all__ = ["FastaRecord", "FastaError", "parse_fasta", "read_sequences", "MAX_SEQUENCE_LENGTH", "FASTA_SUFFIXES"]

#: Longest record (residues over all chains) accepted; a guard against feeding a genome by mistake.
MAX_SEQUENCE_LENGTH = 10_000
#: File suffixes picked up when a directory is given to :func:`read_sequences`.
FASTA_SUFFIXES = (".fa", ".fasta", ".faa")
#: Longest record name kept after sanitising (names become file names).
MAX_NAME_LENGTH = 100
#: Record name used for a bare sequence string passed to :func:`read_sequences`.
BARE_SEQUENCE_NAME = "sequence"

_COMMENT_PREFIXES = (";", "#")
_VALID_LETTERS = frozenset(residues.VALID_SEQUENCE_LETTERS)
_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]")
_NO_RECORD = "(none)"


class FastaError(ValueError):
    """Bad FASTA input; the message is ``"<file>:<line>: record '<name>': <reason>"``.

    Attributes:
      source: file path (or ``<string>``), line: 1-based line number, record: record name
      (``"(none)"`` for file-level problems), reason: the reason alone.
    """

    def __init__(self, source: str, line: int, record: str | None, reason: str):
        self.source, self.line, self.record, self.reason = source, line, record or _NO_RECORD, reason
        super().__init__(f"{source}:{line}: record '{self.record}': {reason}")


@dataclass(frozen=True)
class FastaRecord:
    """One FASTA record.

    Attributes:
      name: first word of the header, sanitised for use as a file name (``[A-Za-z0-9._-]``).
      description: the full header line without ``>``.
      sequence: upper-case residues of all chains, ``*`` and ``:`` removed.
      chains: the sequence split on ``:`` (one entry for a single chain).
      path: file the record was read from (None for text input).
      line: 1-based line of the header (1 for a bare sequence).
    """

    name: str
    description: str
    sequence: str
    chains: tuple[str, ...]
    path: str | None
    line: int


def sanitize_name(word: str) -> str:
    """A header word -> a safe file name: unsafe characters become ``_``, no leading dots."""
    return _UNSAFE_NAME_CHARS.sub("_", word).lstrip(".")[:MAX_NAME_LENGTH]


def _decode(data: bytes, source: str) -> str:
    if b"\x00" in data[:65536]:
        raise FastaError(source, 1, None, "binary file, not FASTA text")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        reason = f"not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start})"
        raise FastaError(source, line, None, reason) from None
    return text.removeprefix("\ufeff")


def _parse_sequence_line(raw: str, source: str, lineno: int, name: str) -> str:
    seq = "".join(raw.split()).upper()
    for col, ch in enumerate(seq, 1):
        if ch in _VALID_LETTERS or ch in "*:":
            continue
        if ch == "-" or ch == ".":
            reason = f"gap character {ch!r} at column {col}: give an unaligned sequence"
        elif ch.isdigit():
            reason = f"digit {ch!r} at column {col} (numbered sequence format?)"
        else:
            reason = f"invalid character {ch!r} at column {col}"
        raise FastaError(source, lineno, name, reason)
    return seq


def _finish_record(
    name: str, description: str, header_line: int, parts: list[tuple[int, str]], source: str, path: str | None
) -> FastaRecord:
    """Validate the sequence lines of one record (``parts`` = (line, cleaned text))."""
    if not any(text for _, text in parts):
        raise FastaError(source, header_line, name, "empty record (no sequence lines)")
    joined = "".join(text for _, text in parts)
    # a '*' may only close a chain: find the line of any '*' followed by a residue of the same chain
    pos = 0
    for lineno, text in parts:
        for k, ch in enumerate(text):
            if ch == "*":
                following = joined[pos + k + 1 :]
                nxt = following[:1]
                if nxt and nxt not in ":*":
                    raise FastaError(source, lineno, name, "'*' inside the sequence (only allowed at the end)")
                if nxt == "*":
                    raise FastaError(source, lineno, name, "repeated '*'")
        pos += len(text)
    chains = tuple(c.rstrip("*") for c in joined.split(":"))
    if any(not c for c in chains):
        raise FastaError(source, header_line, name, f"empty chain in {joined[:60]!r} (stray ':' separator)")
    sequence = "".join(chains)
    if len(sequence) > MAX_SEQUENCE_LENGTH:
        raise FastaError(
            source, header_line, name, f"{len(sequence)} residues exceeds the maximum of {MAX_SEQUENCE_LENGTH}"
        )
    return FastaRecord(
        name=name, description=description, sequence=sequence, chains=chains, path=path, line=header_line
    )


def _parse_text(text: str, source: str, path: str | None) -> list[FastaRecord]:
    records: list[FastaRecord] = []
    seen: dict[str, int] = {}
    current: tuple[str, str, int] | None = None  # (name, description, header line)
    parts: list[tuple[int, str]] = []
    lineno = 0
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(_COMMENT_PREFIXES):
            continue
        if line.startswith(">"):
            if current is not None:
                records.append(_finish_record(*current, parts, source, path))
            description = line[1:].strip()
            words = description.split()
            name = sanitize_name(words[0]) if words else ""
            if not name:
                raise FastaError(source, lineno, None, f"empty record name in header {line[:60]!r}")
            key = name.lower()
            if key in seen:
                raise FastaError(source, lineno, name, f"duplicate record name (first at line {seen[key]})")
            seen[key] = lineno
            current, parts = (name, description, lineno), []
            continue
        if current is None:
            raise FastaError(source, lineno, None, "sequence data before the first '>' header")
        parts.append((lineno, _parse_sequence_line(line, source, lineno, current[0])))
    if current is not None:
        records.append(_finish_record(*current, parts, source, path))
    if not records:
        reason = "empty file" if not text.strip() else "no FASTA records (no line starts with '>')"
        raise FastaError(source, max(lineno, 1), None, reason)
    return records


def parse_fasta(path_or_text: str | os.PathLike, *, source_name: str | None = None) -> list[FastaRecord]:
    """Parse FASTA from a file path or from FASTA text.

    A ``pathlib.Path`` (or a string that names an existing file and holds no newline) is read as a
    file; any other string is parsed as FASTA text.

    Args:
      path_or_text: file path or FASTA text.
      source_name: name used in error messages for text input (default ``<string>``).

    Returns:
      The records in file order.

    Raises:
      FastaError: any problem listed in the module docstring, or an unreadable file.
    """
    is_path = isinstance(path_or_text, os.PathLike) or (
        "\n" not in path_or_text and not path_or_text.lstrip().startswith(">") and os.path.isfile(path_or_text)
    )
    if not is_path:
        text = str(path_or_text)
        return _parse_text(text.removeprefix("\ufeff"), source_name or "<string>", None)
    path = pathlib.Path(path_or_text)
    source = source_name or str(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise FastaError(source, 1, None, "file not found") from None
    except IsADirectoryError:
        raise FastaError(source, 1, None, "is a directory (use read_sequences for a folder)") from None
    except OSError as e:
        raise FastaError(source, 1, None, f"cannot read file ({e.strerror or e})") from None
    return _parse_text(_decode(data, source), source, str(path))


def _looks_like_sequence(text: str) -> bool:
    body = "".join(text.split()).upper()
    return bool(body) and all(ch in _VALID_LETTERS or ch in "*:" for ch in body)


def read_sequences(inp: str | os.PathLike) -> list[FastaRecord]:
    """Prediction inputs: a FASTA file, a folder of FASTA files, or a bare sequence string.

    A folder is searched recursively for ``*.fa``, ``*.fasta`` and ``*.faa`` (sorted by path);
    record names must be unique over all files, since outputs are named after them. A string that
    is not an existing path and consists only of residue letters (and ``:``/``*``) is one record
    named ``"sequence"``.

    Raises:
      FastaError: bad FASTA, a missing path, a folder without FASTA files, or duplicate names.
    """
    text = os.fspath(inp)
    path = pathlib.Path(text)
    if not isinstance(inp, os.PathLike) and "\n" not in text and not path.exists() and _looks_like_sequence(text):
        return _parse_text(f">{BARE_SEQUENCE_NAME}\n{text}\n", "<sequence>", None)
    if path.is_dir():
        files = sorted(
            p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in FASTA_SUFFIXES
        )
        if not files:
            raise FastaError(str(path), 1, None, f"no FASTA files ({', '.join(FASTA_SUFFIXES)}) in this folder")
        records: list[FastaRecord] = []
        first_seen: dict[str, FastaRecord] = {}
        for f in files:
            for rec in parse_fasta(f):
                prev = first_seen.get(rec.name.lower())
                if prev is not None:
                    raise FastaError(
                        str(f), rec.line, rec.name, f"duplicate record name (also in {prev.path}:{prev.line})"
                    )
                first_seen[rec.name.lower()] = rec
                records.append(rec)
        return records
    if not path.exists():
        if isinstance(inp, os.PathLike):
            raise FastaError(text, 1, None, "file not found")
        if "\n" in text or text.lstrip().startswith(">"):
            return parse_fasta(text)
        raise FastaError(text, 1, None, "no such file, and not a valid protein sequence")
    return parse_fasta(path)
