"""Tests of simplefold.io.fasta: accepted FASTA variants and one-line errors naming file, record and line."""

from __future__ import annotations

import pathlib
import re

import pytest
from conftest import REPO

from simplefold.io.fasta import (
    MAX_SEQUENCE_LENGTH,
    FastaError,
    FastaRecord,
    iter_records,
    iter_sequences,
    parse_fasta,
    read_sequences,
)

EXAMPLES = REPO / "data" / "examples"


def _write(tmp_path: pathlib.Path, name: str, content: str | bytes) -> pathlib.Path:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def test_good_fasta_variants(tmp_path):
    text = (
        "; old-style comment\r\n"
        "# another comment\r\n"
        "\r\n"
        ">trp_cage  Trp-cage miniprotein TC5b\r\n"
        "nlyiqwlkdg\r\n"
        "GPSSG RPPPS*\r\n"
        "\r\n"
        ">sp|P69905|HBA_HUMAN hemoglobin\r\n"
        "MVLSPADKTNVKAAWGKVGA\r\n"
        ">complex two chains\r\n"
        "ACDEFGHIK*:LMNPQRSTVWY\r\n"
        ">odd_letters\r\n"
        "XBZJUO\r\n"
    )
    path = _write(tmp_path, "in.fasta", text)
    records = parse_fasta(path)
    assert [r.name for r in records] == ["trp_cage", "sp_P69905_HBA_HUMAN", "complex", "odd_letters"]
    trp = records[0]
    assert trp.sequence == "NLYIQWLKDGGPSSGRPPPS" and trp.chains == (trp.sequence,)
    assert trp.description == "trp_cage  Trp-cage miniprotein TC5b"
    assert trp.path == str(path) and trp.line == 4
    assert records[1].line == 8
    cplx = records[2]
    assert cplx.chains == ("ACDEFGHIK", "LMNPQRSTVWY") and cplx.sequence == "ACDEFGHIKLMNPQRSTVWY"
    assert records[3].sequence == "XBZJUO"
    assert all(isinstance(r, FastaRecord) for r in records)
    # the same text parses identically from a string (no path, named source in errors)
    from_text = parse_fasta(text)
    assert [(r.name, r.sequence, r.line) for r in from_text] == [(r.name, r.sequence, r.line) for r in records]
    assert from_text[0].path is None


def test_old_mac_line_endings_and_bom(tmp_path):
    path = _write(tmp_path, "mac.fa", b"\xef\xbb\xbf>a\rACDE\rFG\r")
    (rec,) = parse_fasta(path)
    assert rec.name == "a" and rec.sequence == "ACDEFG"


def test_read_sequences_file_folder_and_bare_string(tmp_path):
    (tmp_path / "sub").mkdir()
    _write(tmp_path, "b.fasta", ">b\nACD\n")
    _write(tmp_path, "sub/a.fa", ">a\nEFG\n>a2\nHIK\n")
    _write(tmp_path, "c.faa", ">c\nLMN\n")
    _write(tmp_path, "notes.txt", ">ignored\nAAA\n")
    records = read_sequences(tmp_path)
    assert [r.name for r in records] == ["b", "c", "a", "a2"]  # sorted by path: b.fasta, c.faa, sub/a.fa
    assert [r.name for r in read_sequences(tmp_path / "c.faa")] == ["c"]
    assert [r.name for r in read_sequences(str(tmp_path / "c.faa"))] == ["c"]
    (bare,) = read_sequences("nlyiqwlkdggpssgrppps")
    assert bare.name == "sequence" and bare.sequence == "NLYIQWLKDGGPSSGRPPPS" and bare.path is None
    (two,) = read_sequences("ACD:EFG")
    assert two.chains == ("ACD", "EFG")


def test_example_files_parse():
    trp = parse_fasta(EXAMPLES / "trp_cage.fasta")
    gb1 = parse_fasta(EXAMPLES / "gb1.fasta")
    assert [r.sequence for r in trp] == ["NLYIQWLKDGGPSSGRPPPS"]
    assert [r.sequence for r in gb1] == ["MTYKLILNGKTLKGETTTEAVDAATAEKVFKQYANDNGVDGEWTYDDATKTFTVTE"]
    assert len(read_sequences(EXAMPLES)) == 2


# (name, file content, expected line, expected record, reason regex)
BAD_INPUTS = [
    ("before_header", "ACDE\n>a\nACDE\n", 1, "(none)", r"sequence data before the first '>' header"),
    ("empty_name", ">a\nAC\n>   \nAC\n", 3, "(none)", r"empty record name"),
    ("empty_record", ">a\nACD\n>b\n\n>c\nEF\n", 3, "b", r"empty record"),
    ("empty_last_record", ">a\nACD\n>b\n", 3, "b", r"empty record"),
    ("digits", ">a\nACDEF\nGH1KL\n", 3, "a", r"digit '1' at column 3"),
    ("punctuation", ">a\nACD!EF\n", 2, "a", r"invalid character '!' at column 4"),
    ("gap", ">a\nAC-DEF\n", 2, "a", r"gap character '-'"),
    ("dot", ">a\nAC.DEF\n", 2, "a", r"gap character '\.'"),
    ("star_inside", ">a\nACD*EF\n", 2, "a", r"'\*' inside the sequence"),
    ("star_line_end", ">a\nACD*\nEF\n", 2, "a", r"'\*' inside the sequence"),
    ("double_star", ">a\nACD**\n", 2, "a", r"repeated '\*'"),
    ("empty_chain", ">a\nACD::EF\n", 1, "a", r"empty chain 2 .*stray ':' separator"),
    ("leading_colon", ">x\nAA\n>a\n:ACD\n", 3, "a", r"empty chain 1 .*stray ':'"),
    ("only_star", ">a\n*\n", 1, "a", r"no residues: the sequence is only '\*'"),
    ("star_chain", ">a\nACD:*\n", 1, "a", r"empty chain 2 .*a stop '\*' with no residues before it"),
    ("duplicate", ">a one\nAC\n>b\nDE\n>a two\nFG\n", 5, "a", r"duplicate record name \(first at line 1\)"),
    ("duplicate_case", ">Abc\nAC\n>aBC\nDE\n", 3, "aBC", r"duplicate record name"),
    ("empty_file", "", 1, "(none)", r"empty file"),
    ("only_comments", "; nothing\n# here\n\n", 3, "(none)", r"empty file|no FASTA records"),
    ("no_header_text", "hello world\n", 1, "(none)", r"before the first '>' header"),
    ("too_long", ">big\n" + "A" * (MAX_SEQUENCE_LENGTH + 1) + "\n", 1, "big",
     rf"exceeds the maximum of {MAX_SEQUENCE_LENGTH}"),
    ("binary", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", 1, "(none)", r"binary file"),
    ("latin1", ">a\nACDE\n>caf\xe9\nAC\n".encode("latin-1"), 3, "(none)", r"not UTF-8"),
]


@pytest.mark.parametrize("case", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_message_names_file_record_and_line(tmp_path, case):
    name, content, line, record, reason = case
    path = _write(tmp_path, f"{name}.fasta", content)
    with pytest.raises(FastaError) as info:
        parse_fasta(path)
    err = info.value
    msg = str(err)
    assert "\n" not in msg
    assert msg.startswith(f"{path}:{line}: record '{record}': "), msg
    assert re.search(reason, msg), msg
    assert (err.source, err.line, err.record) == (str(path), line, record)
    assert isinstance(err, ValueError)


def test_text_input_errors_use_source_name():
    with pytest.raises(FastaError, match=r"^query\.fa:2: record 'a': invalid character '%'"):
        parse_fasta(">a\nAC%D\n", source_name="query.fa")
    with pytest.raises(FastaError, match=r"^<string>:1: record '\(none\)'"):
        parse_fasta("")


def test_read_sequences_errors(tmp_path):
    with pytest.raises(FastaError, match=r"no such file, and not a valid protein sequence"):
        read_sequences(str(tmp_path / "missing.fasta"))
    with pytest.raises(FastaError, match=r"no such file"):
        read_sequences("ACDE1")
    with pytest.raises(FastaError, match=r"file not found"):
        read_sequences(tmp_path / "missing.fasta")
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    with pytest.raises(FastaError, match=rf"^{re.escape(str(empty_dir))}:1: record '\(none\)': no FASTA files"):
        read_sequences(empty_dir)
    # duplicate names across files collide on output file names
    folder = tmp_path / "dup"
    folder.mkdir()
    _write(folder, "a.fasta", ">x\nACD\n")
    _write(folder, "b.fasta", ">y\nACD\n>X\nEF\n")
    with pytest.raises(FastaError) as info:
        read_sequences(folder)
    assert str(info.value).startswith(f"{folder / 'b.fasta'}:3: record 'X': duplicate record name")
    assert f"{folder / 'a.fasta'}:1" in str(info.value)
    # a bad file inside a folder is reported with its own path
    _write(folder, "b.fasta", ">y\nAC1\n")
    with pytest.raises(FastaError, match=re.escape(f"{folder / 'b.fasta'}:2: record 'y'")):
        read_sequences(folder)


def test_names_are_sanitised_for_file_names():
    recs = parse_fasta(">../../etc/passwd x\nAC\n>tr|A0A|B_C/1-20\nDE\n>.hidden\nFG\n")
    assert [r.name for r in recs] == ["_.._etc_passwd", "tr_A0A_B_C_1-20", "hidden"]
    assert all("/" not in r.name and not r.name.startswith(".") for r in recs)


# a multi-record file with bad records in the middle: (line, content), 1-based file lines
LENIENT_FILE = [
    "; comment",  # 1
    ">good1 first record",  # 2
    "MKTAY",  # 3
    ">bad digit",  # 4
    "MKT",  # 5
    "AC1DE",  # 6
    "ACDEF",  # 7 (rest of the bad record: skipped, no second error)
    ">empty",  # 8
    "",  # 9
    ">good2",  # 10
    "ACDE",  # 11
    "FG*",  # 12
    ">GOOD1 again",  # 13
    "AC",  # 14
    ">   ",  # 15
    "ACD",  # 16
    ">star",  # 17
    "AC*D",  # 18
    ">last",  # 19
    "MK",  # 20
]


def test_iter_records_yields_good_records_and_errors_with_file_lines(tmp_path):
    path = _write(tmp_path, "mixed.fasta", "\n".join(LENIENT_FILE) + "\n")
    items = list(iter_records(path))
    kinds = [(type(x).__name__, x.name if isinstance(x, FastaRecord) else x.record) for x in items]
    assert kinds == [
        ("FastaRecord", "good1"), ("FastaError", "bad"), ("FastaError", "empty"), ("FastaRecord", "good2"),
        ("FastaError", "GOOD1"), ("FastaError", "(none)"), ("FastaError", "star"), ("FastaRecord", "last"),
    ]
    good1, bad, empty, good2, dup, noname, star, last = items
    assert (good1.line, good2.line, last.line) == (2, 10, 19)
    assert good2.sequence == "ACDEFG" and good1.description == "good1 first record"
    # (error line, header line, reason) are the file's lines
    expected = [
        (bad, 6, 4, r"digit '1' at column 3"),
        (empty, 8, 8, r"empty record"),
        (dup, 13, 13, r"duplicate record name \(first at line 2\)"),
        (noname, 15, 15, r"empty record name"),
        (star, 18, 17, r"'\*' inside the sequence"),
    ]
    for err, line, header_line, reason in expected:
        assert (err.source, err.line, err.header_line) == (str(path), line, header_line)
        assert str(err).startswith(f"{path}:{line}: record '{err.record}': ") and re.search(reason, str(err))
        assert err.description == LENIENT_FILE[header_line - 1][1:].strip()
    assert LENIENT_FILE[bad.line - 1] == "AC1DE" and LENIENT_FILE[star.line - 1] == "AC*D"
    # the strict reader raises exactly the first of these errors
    with pytest.raises(FastaError) as info:
        parse_fasta(path)
    assert str(info.value) == str(bad)


def test_parse_fasta_collect_mode(tmp_path):
    path = _write(tmp_path, "mixed.fasta", "\n".join(LENIENT_FILE) + "\n")
    records, errors = parse_fasta(path, errors="collect")
    assert [r.name for r in records] == ["good1", "good2", "last"]
    assert [(e.record, e.line) for e in errors] == [("bad", 6), ("empty", 8), ("GOOD1", 13), ("(none)", 15),
                                                    ("star", 18)]
    # text input: the same lines, source named as asked
    t_records, t_errors = parse_fasta("\n".join(LENIENT_FILE), source_name="q.fa", errors="collect")
    assert [r.name for r in t_records] == ["good1", "good2", "last"] and t_records[0].path is None
    assert [str(e) for e in t_errors] == [str(e).replace(str(path), "q.fa", 1) for e in errors]
    # a clean file: no errors, the same records as strict reading
    clean = _write(tmp_path, "clean.fasta", ">a\nAC\n>b\nDE\n")
    assert parse_fasta(clean, errors="collect") == (parse_fasta(clean), [])
    with pytest.raises(ValueError, match="errors must be"):
        parse_fasta(clean, errors="ignore")


@pytest.mark.parametrize("content, reason", [
    (b"", r"empty file"),
    (b"ACDE\n>a\nAC\n", r"before the first '>' header"),
    (b"\x89PNG\r\n\x1a\n\x00\x00", r"binary file"),
    (b">a\nAC\n>caf\xe9\nAC\n", r"not UTF-8"),
])
def test_file_level_problems_still_raise_in_lenient_mode(tmp_path, content, reason):
    path = _write(tmp_path, "f.fasta", content)
    with pytest.raises(FastaError, match=reason) as info:
        parse_fasta(path, errors="collect")
    assert info.value.record == "(none)" and info.value.header_line is None
    with pytest.raises(FastaError, match=reason):
        list(iter_sequences(path))


def test_iter_sequences_folder_bare_and_missing(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    _write(folder, "a.fasta", ">x\nACD\n>bad\nA1\n")
    _write(folder, "b.fasta", ">y\nACD\n>X\nEF\n>z\nGH\n")
    _write(folder, "c.fasta", ">c.X\nKK\n>X\nLL\n")
    items = list(iter_sequences(folder))
    assert [(type(i).__name__, getattr(i, "name", None) or i.record) for i in items] == [
        ("FastaRecord", "x"), ("FastaError", "bad"), ("FastaRecord", "y"), ("FastaRecord", "b.X"), ("FastaRecord", "z"),
        ("FastaRecord", "c.X"), ("FastaError", "X"),
    ]
    # a name used by an earlier file is qualified by its file; when that is taken too, a duplicate
    assert items[3].sequence == "EF" and items[3].line == 3
    dup = items[6]
    assert str(dup).startswith(f"{folder / 'c.fasta'}:3: record 'X': duplicate record name (also in ")
    assert f"{folder / 'a.fasta'}:1" in str(dup) and dup.header_line == 3
    assert items[1].line == 4 and items[1].source == str(folder / "a.fasta")
    # the same inputs as read_sequences
    (bare,) = iter_sequences("acde")
    assert bare.name == "sequence" and bare.sequence == "ACDE"
    with pytest.raises(FastaError, match="no such file"):
        list(iter_sequences(str(tmp_path / "missing.fasta")))
    (tmp_path / "none").mkdir()
    with pytest.raises(FastaError, match="no FASTA files"):
        list(iter_sequences(tmp_path / "none"))


def test_bare_sequence_longer_than_a_file_name():
    """A 300-residue sequence on the command line is a sequence, not an ENAMETOOLONG path error."""
    from simplefold.predict.targets import read_targets

    seq = "MKTAYIAKQR" * 30
    from simplefold.io import fasta

    assert [r.sequence for r in fasta.read_sequences(seq)] == [seq]
    assert [t.sequence for t in read_targets(seq)] == [seq]
