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

Strict and lenient reading: :func:`parse_fasta` and :func:`read_sequences` raise the first error.
:func:`iter_records` / :func:`iter_sequences` (and ``parse_fasta(..., errors="collect")``) go on
after a bad record: they yield, in file order, each good :class:`FastaRecord` and, in place of each
bad record, its :class:`FastaError` (line numbers are the file's lines; ``header_line`` and
``description`` say which record it was). Problems of the whole file (unreadable, binary, not
UTF-8, no records, sequence data before the first header) still raise.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pathlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal, NamedTuple, overload

from simplefold import residues

logger = logging.getLogger(__name__)

__all__ = [
    "FastaRecord", "FastaError", "parse_fasta", "read_sequences", "iter_records", "iter_sequences",
    "MAX_SEQUENCE_LENGTH", "FASTA_SUFFIXES",
]

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
      source: file path (or ``<string>``), line: 1-based line number in the file, record: record
      name (``"(none)"`` for file-level problems and for a header without a name), reason: the
      reason alone.
      header_line: 1-based line of the bad record's ``>`` header (None for file-level problems).
      description: that header's text without ``>`` (``""`` for file-level problems).
    """

    def __init__(
        self, source: str, line: int, record: str | None, reason: str, *,
        header_line: int | None = None, description: str = "",
    ):
        self.source, self.line, self.record, self.reason = source, line, record or _NO_RECORD, reason
        self.header_line, self.description = header_line, description
        super().__init__(f"{source}:{line}: record '{self.record}': {reason}")


class _Header(NamedTuple):
    """The record being read: sanitised name ("" if none), header text without ``>``, 1-based line."""

    name: str
    description: str
    line: int

    def error(self, source: str, line: int, reason: str) -> FastaError:
        return FastaError(source, line, self.name, reason, header_line=self.line, description=self.description)


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


def _parse_sequence_line(raw: str, source: str, lineno: int, header: _Header) -> str:
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
        raise header.error(source, lineno, reason)
    return seq


def _finish_record(header: _Header, parts: list[tuple[int, str]], source: str, path: str | None) -> FastaRecord:
    """Validate the sequence lines of one record (``parts`` = (line, cleaned text))."""
    if not any(text for _, text in parts):
        raise header.error(source, header.line, "empty record (no sequence lines)")
    joined = "".join(text for _, text in parts)
    # a '*' may only close a chain: find the line of any '*' followed by a residue of the same chain
    pos = 0
    for lineno, text in parts:
        for k, ch in enumerate(text):
            if ch == "*":
                following = joined[pos + k + 1 :]
                nxt = following[:1]
                if nxt and nxt not in ":*":
                    raise header.error(source, lineno, "'*' inside the sequence (only allowed at the end)")
                if nxt == "*":
                    raise header.error(source, lineno, "repeated '*'")
        pos += len(text)
    pieces = joined.split(":")
    chains = tuple(c.rstrip("*") for c in pieces)
    if any(not c for c in chains):
        if not joined.strip("*:"):  # e.g. a record of only '*': no residue at all
            raise header.error(source, header.line, f"no residues: the sequence is only {joined[:20]!r}")
        k = next(i for i, c in enumerate(chains) if not c)
        what = "a stop '*' with no residues before it" if pieces[k] else "a stray ':' separator"
        raise header.error(source, header.line, f"empty chain {k + 1} in {joined[:60]!r} ({what})")
    sequence = "".join(chains)
    if len(sequence) > MAX_SEQUENCE_LENGTH:
        raise header.error(
            source, header.line, f"{len(sequence)} residues exceeds the maximum of {MAX_SEQUENCE_LENGTH}"
        )
    return FastaRecord(
        name=header.name, description=header.description, sequence=sequence, chains=chains, path=path,
        line=header.line,
    )


def _finished(header: _Header | None, parts: list[tuple[int, str]], source: str, path: str | None):
    """The record (or its error) of a completely read header, or None when there is nothing to yield."""
    if header is None:
        return None
    try:
        return _finish_record(header, parts, source, path)
    except FastaError as exc:
        return exc


def _iter_text(text: str, source: str, path: str | None) -> Iterator[FastaRecord | FastaError]:
    """Records and record-level errors of FASTA text in file order; raises file-level errors.

    After a record-level error the rest of that record's lines are skipped, so each record yields
    exactly one item. A record whose name repeats an earlier one (case-insensitively) is an error
    even when the earlier record was bad, as in strict reading.
    """
    seen: dict[str, int] = {}
    current: _Header | None = None  # the record being read; None once it has been reported bad
    parts: list[tuple[int, str]] = []
    any_header = False
    lineno = 0
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(_COMMENT_PREFIXES):
            continue
        if line.startswith(">"):
            item = _finished(current, parts, source, path)
            if item is not None:
                yield item
            any_header = True
            description = line[1:].strip()
            words = description.split()
            current, parts = _Header(sanitize_name(words[0]) if words else "", description, lineno), []
            key = current.name.lower()
            if not current.name:
                yield current.error(source, lineno, f"empty record name in header {line[:60]!r}")
                current = None
            elif key in seen:
                yield current.error(source, lineno, f"duplicate record name (first at line {seen[key]})")
                current = None
            else:
                seen[key] = lineno
            continue
        if not any_header:
            raise FastaError(source, lineno, None, "sequence data before the first '>' header")
        if current is None:
            continue  # rest of a bad record
        try:
            parts.append((lineno, _parse_sequence_line(line, source, lineno, current)))
        except FastaError as exc:
            yield exc
            current = None
    item = _finished(current, parts, source, path)
    if item is not None:
        yield item
    if not any_header:
        reason = "empty file" if not text.strip() else "no FASTA records (no line starts with '>')"
        raise FastaError(source, max(lineno, 1), None, reason)


def _parse_text(text: str, source: str, path: str | None) -> list[FastaRecord]:
    """Strict: the records, or the first error raised."""
    records = []
    for item in _iter_text(text, source, path):
        if isinstance(item, FastaError):
            raise item
        records.append(item)
    return records


def _source_text(path_or_text: str | os.PathLike, source_name: str | None) -> tuple[str, str, str | None]:
    """(text, source name for messages, file path or None) of a path or of FASTA text."""
    is_path = isinstance(path_or_text, os.PathLike) or (
        "\n" not in path_or_text and not path_or_text.lstrip().startswith(">") and os.path.isfile(path_or_text)
    )
    if not is_path:
        return str(path_or_text).removeprefix("\ufeff"), source_name or "<string>", None
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
    return _decode(data, source), source, str(path)


def iter_records(
    path_or_text: str | os.PathLike, *, source_name: str | None = None
) -> Iterator[FastaRecord | FastaError]:
    """Lenient :func:`parse_fasta`: every record of a file or text, a bad one as its error.

    Yields, in file order, a :class:`FastaRecord` for each good record and, for each bad one (bad
    letters, no residues, empty name, duplicate name, ...), the :class:`FastaError` strict reading
    would raise for it: ``line`` is the offending line of the file, ``header_line`` the line of the
    record's header, ``description`` its header text, ``record`` its name (``"(none)"`` for an
    empty header name).

    Raises:
      FastaError: file-level problems (unreadable, binary, not UTF-8, empty, no records, sequence
        data before the first header); raised when the iterator reaches them.
    """
    text, source, path = _source_text(path_or_text, source_name)
    yield from _iter_text(text, source, path)


@overload
def parse_fasta(
    path_or_text: str | os.PathLike, *, source_name: str | None = None, errors: Literal["raise"] = "raise"
) -> list[FastaRecord]: ...


@overload
def parse_fasta(
    path_or_text: str | os.PathLike, *, source_name: str | None = None, errors: Literal["collect"]
) -> tuple[list[FastaRecord], list[FastaError]]: ...


def parse_fasta(path_or_text, *, source_name=None, errors="raise"):
    """Parse FASTA from a file path or from FASTA text.

    A ``pathlib.Path`` (or a string that names an existing file and holds no newline) is read as a
    file; any other string is parsed as FASTA text.

    Args:
      path_or_text: file path or FASTA text.
      source_name: name used in error messages for text input (default ``<string>``).
      errors: ``"raise"`` (the first bad record raises) or ``"collect"`` (bad records are skipped
        and returned as errors; see :func:`iter_records`).

    Returns:
      ``"raise"``: the records in file order. ``"collect"``: ``(records, errors)``, each in file
      order, ``errors`` holding one :class:`FastaError` per bad record.

    Raises:
      FastaError: any problem listed in the module docstring, or an unreadable file (with
        ``"collect"``, only the file-level ones).
    """
    if errors not in ("raise", "collect"):
        raise ValueError(f"errors must be 'raise' or 'collect', got {errors!r}")
    text, source, path = _source_text(path_or_text, source_name)
    if errors == "raise":
        return _parse_text(text, source, path)
    records: list[FastaRecord] = []
    bad: list[FastaError] = []
    for item in _iter_text(text, source, path):
        (bad if isinstance(item, FastaError) else records).append(item)
    return records, bad


def _looks_like_sequence(text: str) -> bool:
    body = "".join(text.split()).upper()
    return bool(body) and all(ch in _VALID_LETTERS or ch in "*:" for ch in body)


def _path_exists(text: str) -> bool:
    """``Path(text).exists()``, False for a string no file can be named (a bare sequence longer
    than the file-name limit raises ENAMETOOLONG)."""
    try:
        return pathlib.Path(text).exists()
    except OSError:
        return False


def _is_bare_sequence(inp: str | os.PathLike) -> bool:
    text = os.fspath(inp)
    return (
        not isinstance(inp, os.PathLike) and "\n" not in text and not _path_exists(text)
        and _looks_like_sequence(text)
    )


def _bare_sequence_text(inp: str | os.PathLike) -> str:
    return f">{BARE_SEQUENCE_NAME}\n{os.fspath(inp)}\n"


def _folder_files(folder: pathlib.Path) -> list[pathlib.Path]:
    """FASTA files under ``folder`` (recursive, sorted by path); raises if there are none."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in FASTA_SUFFIXES)
    if not files:
        raise FastaError(str(folder), 1, None, f"no FASTA files ({', '.join(FASTA_SUFFIXES)}) in this folder")
    return files


def _cross_file_duplicate(
    rec: FastaRecord, file: pathlib.Path, first_seen: dict[str, FastaRecord]
) -> FastaError | None:
    """The error of a record whose name an earlier file of the folder already used (else None)."""
    prev = first_seen.setdefault(rec.name.lower(), rec)
    if prev is rec:
        return None
    return FastaError(
        str(file), rec.line, rec.name, f"duplicate record name (also in {prev.path}:{prev.line})",
        header_line=rec.line, description=rec.description,
    )


def _qualified(rec: FastaRecord, file: pathlib.Path, first_seen: dict[str, FastaRecord]) -> FastaRecord:
    """``rec`` renamed ``<file stem>.<name>`` when an earlier file of the folder used its name
    (``>query`` / ``>sequence`` are common), so both are folded; logged, and the target's source
    (file:line) in the manifest says where it came from."""
    name = sanitize_name(f"{file.stem}.{rec.name}")
    if name.lower() in first_seen:
        return rec  # still taken: reported as a duplicate
    prev = first_seen[rec.name.lower()]
    logger.warning("%s:%d: record name %r is also used in %s:%d; this one is named %r", file, rec.line, rec.name,
                   prev.path, prev.line, name)
    return dataclasses.replace(rec, name=name)


def _missing_path_error(inp: str | os.PathLike) -> FastaError:
    text = os.fspath(inp)
    if isinstance(inp, os.PathLike):
        return FastaError(text, 1, None, "file not found")
    return FastaError(text, 1, None, "no such file, and not a valid protein sequence")


def _is_fasta_text(inp: str | os.PathLike) -> bool:
    text = os.fspath(inp)
    return not isinstance(inp, os.PathLike) and ("\n" in text or text.lstrip().startswith(">"))


def read_sequences(inp: str | os.PathLike) -> list[FastaRecord]:
    """Prediction inputs: a FASTA file, a folder of FASTA files, or a bare sequence string.

    A folder is searched recursively for ``*.fa``, ``*.fasta`` and ``*.faa`` (sorted by path);
    record names must be unique over all files, since outputs are named after them. A string that
    is not an existing path and consists only of residue letters (and ``:``/``*``) is one record
    named ``"sequence"``.

    Raises:
      FastaError: bad FASTA, a missing path, a folder without FASTA files, or duplicate names.
    """
    path = pathlib.Path(os.fspath(inp))
    if _is_bare_sequence(inp):
        return _parse_text(_bare_sequence_text(inp), "<sequence>", None)
    if path.is_dir():
        records: list[FastaRecord] = []
        first_seen: dict[str, FastaRecord] = {}
        for f in _folder_files(path):
            for rec in parse_fasta(f):  # a bad file raises before its names are compared
                dup = _cross_file_duplicate(rec, f, first_seen)
                if dup is not None:
                    raise dup
                records.append(rec)
        return records
    if not path.exists():
        if _is_fasta_text(inp):
            return parse_fasta(os.fspath(inp))
        raise _missing_path_error(inp)
    return parse_fasta(path)


def iter_sequences(inp: str | os.PathLike) -> Iterator[FastaRecord | FastaError]:
    """Lenient :func:`read_sequences`: the same inputs, each bad record yielded as its error.

    Items come in the order of :func:`read_sequences` (files sorted by path, records in file
    order). In a folder, a record reusing the name of one in an earlier file is renamed
    ``<file stem>.<name>`` (logged; a ``duplicate record name`` error only if that is taken too),
    and a file that cannot be read (binary, not UTF-8, ...) is yielded as its error while the other
    files are still read. See :func:`iter_records` for the errors.

    Raises:
      FastaError: file-level problems (a missing path, a folder without FASTA files, an
        unreadable, binary or empty file, ...), when the iterator reaches them.
    """
    path = pathlib.Path(os.fspath(inp))
    if _is_bare_sequence(inp):
        yield from _iter_text(_bare_sequence_text(inp), "<sequence>", None)
    elif path.is_dir():
        first_seen: dict[str, FastaRecord] = {}
        for f in _folder_files(path):
            try:
                for item in iter_records(f):
                    if not isinstance(item, FastaError) and item.name.lower() in first_seen:
                        item = _qualified(item, f, first_seen)
                    dup = None if isinstance(item, FastaError) else _cross_file_duplicate(item, f, first_seen)
                    yield dup if dup is not None else item
            except FastaError as exc:  # one unreadable or binary file: recorded, the other files still run
                yield exc
    elif path.exists():
        yield from iter_records(path)
    elif _is_fasta_text(inp):
        yield from iter_records(os.fspath(inp))
    else:
        raise _missing_path_error(inp)
