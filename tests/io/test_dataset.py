"""prepare-data: structure files -> records + manifest (statuses, reasons), resume, filters, split CSV."""

from __future__ import annotations

import gzip
import json
import pathlib
import shutil

import numpy as np
import pytest
from conftest import FIXTURES

from simplefold.io import dataset as D

STRUCTURES = FIXTURES / "structures"
FILES = ("1HIA_l_u.pdb.gz", "2HPR.pdb.gz", "8cny_A.cif.gz")


@pytest.fixture()
def inputs(tmp_path: pathlib.Path) -> pathlib.Path:
    """Three real files and one corrupt one (gzip of garbage with a .pdb.gz name)."""
    d = tmp_path / "in"
    d.mkdir()
    for name in FILES:
        shutil.copy(STRUCTURES / name, d / name)
    with gzip.open(d / "broken.pdb.gz", "wt") as fh:
        fh.write("this is not a PDB file\nATOM  garbage\n")
    (d / "notes.txt").write_text("not a structure file, must be ignored\n")
    return d


def _by_name(out: pathlib.Path) -> dict[str, dict]:
    return {pathlib.Path(e["file"]).name: e for e in D.read_manifest(out)}


def test_records_manifest_and_bad_file(inputs, tmp_path):
    out = tmp_path / "prep"
    summary = D.prepare_dataset([inputs], out, workers=1, progress=False)
    entries = _by_name(out)
    assert set(entries) == {*FILES, "broken.pdb.gz"}  # notes.txt is not a structure file
    bad = entries["broken.pdb.gz"]
    assert bad["status"] == "error" and "broken.pdb.gz" in bad["reason"] and not bad["records"]
    assert summary.files_error == 1 and summary.files == 4
    records = D.load_records(out)
    assert len(records) == summary.records > 0
    for name in FILES:
        assert entries[name]["status"] == "ok"
    # every record round-trips to a Chain whose sequence and CA coordinates match the source file
    from simplefold.io.structure import read_structure

    for rec in records:
        chain = D.load_chain(out, rec)
        src = next(c for c in read_structure(rec.file).chains if c.chain_id == rec.chain)
        assert chain.sequence == rec.sequence == src.sequence
        assert chain.num_residues == rec.length and chain.num_atoms == rec.num_atoms
        ca, m = chain.atom_coords("CA")
        ca_src, m_src = src.atom_coords("CA")
        np.testing.assert_array_equal(m, m_src)
        np.testing.assert_allclose(ca[m], ca_src[m_src], atol=1e-4)
    assert json.loads((out / D.SUMMARY).read_text())["records"] == len(records)


def test_resume_skips_done_files(inputs, tmp_path):
    out = tmp_path / "prep"
    D.prepare_dataset([inputs / FILES[0]], out, workers=1, progress=False)
    npz = out / D.load_records(out)[0].npz_name
    mtime = npz.stat().st_mtime_ns
    # a crash mid-line leaves a truncated last line: it is ignored
    with open(out / D.MANIFEST, "a") as fh:
        fh.write('{"file": "trunc')
    summary = D.prepare_dataset([inputs], out, workers=1, progress=False)
    assert summary.files_resumed == 1
    assert npz.stat().st_mtime_ns == mtime  # not re-processed
    names = [pathlib.Path(e["file"]).name for e in D.read_manifest(out)]
    assert sorted(names) == sorted([*FILES, "broken.pdb.gz"])  # each file exactly once
    again = D.prepare_dataset([inputs], out, workers=1, progress=False)
    assert again.files_resumed == 4 and again.records == summary.records


def test_length_and_resolved_filters(inputs, tmp_path):
    full = tmp_path / "full"
    D.prepare_dataset([inputs / f for f in FILES], full, workers=1, progress=False)
    lengths = sorted(r.length for r in D.load_records(full))
    assert len(set(lengths)) >= 2
    cut = lengths[len(lengths) // 2]
    out = tmp_path / "filtered"
    opts = D.PrepareOptions(min_length=1, max_length=cut - 1)
    D.prepare_dataset([inputs / f for f in FILES], out, options=opts, workers=1, progress=False)
    kept = D.load_records(out)
    assert kept and all(r.length < cut for r in kept)
    skipped = [s for e in D.read_manifest(out) for s in e["skipped"]]
    assert any(s["reason"].startswith("too long") for s in skipped)
    # min_length
    out2 = tmp_path / "minlen"
    D.prepare_dataset([inputs / f for f in FILES], out2, options=D.PrepareOptions(min_length=cut), workers=1,
                      progress=False)
    assert all(r.length >= cut for r in D.load_records(out2))
    assert any(s["reason"].startswith("too short") for e in D.read_manifest(out2) for s in e["skipped"])
    # a resolved-fraction threshold above every chain's fraction drops everything, with the reason
    out3 = tmp_path / "resolved"
    top = max(r.resolved_fraction for r in D.load_records(full))
    D.prepare_dataset([inputs / f for f in FILES], out3, options=D.PrepareOptions(min_resolved_fraction=top + 1e-3),
                      workers=1, progress=False)
    assert D.load_records(out3) == []
    entries = D.read_manifest(out3)
    assert all(e["status"] == "no_records" and "resolved fraction" in e["reason"] for e in entries)
    # load_records' own length filter
    assert all(r.length <= cut for r in D.load_records(full, max_length=cut))


def test_split_csv(inputs, tmp_path):
    full = tmp_path / "full"
    D.prepare_dataset([inputs / FILES[0], inputs / FILES[1]], full, workers=1, progress=False)
    recs = D.load_records(full)
    first = next(r for r in recs if pathlib.Path(r.file).name == FILES[0])
    second = next(r for r in recs if pathlib.Path(r.file).name == FILES[1])
    csv = tmp_path / "split.csv"
    # one path relative to the CSV's directory, one absolute; FILES[2] is not listed at all
    rel = pathlib.Path(first.file).relative_to(tmp_path)
    csv.write_text(
        "file,chain,length,cluster40,split\n"
        f"{rel},{first.chain},{first.length},7,train\n"
        f"{second.file},{second.chain},{second.length},9,dev\n"
    )
    out = tmp_path / "split"
    summary = D.prepare_dataset([inputs], out, split_csv=csv, workers=1, progress=False)
    assert summary.records_by_split == {"dev": 1, "train": 1}
    assert [r.chain for r in D.load_records(out, "train")] == [first.chain]
    assert D.load_records(out, "dev")[0].cluster == "9"
    entries = _by_name(out)
    assert entries[FILES[2]]["status"] == "no_records" and entries[FILES[2]]["reason"] == "file not in split"
    assert summary.skipped_chains_by_reason.get("file not in split") == 2  # FILES[2] and broken.pdb.gz


def test_split_csv_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("file,chain\nx.pdb,A\n")
    with pytest.raises(ValueError, match="bad.csv.*split"):
        D.read_split_csv(bad)
    bad.write_text("file,chain,split\nx.pdb,A,train\n,A,dev\n")
    with pytest.raises(ValueError, match=r"bad.csv:3"):
        D.read_split_csv(bad)


def test_missing_input_and_not_prepared(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        D.prepare_dataset([tmp_path / "nope"], tmp_path / "o", workers=1, progress=False)
    with pytest.raises(FileNotFoundError, match="not a prepared dataset"):
        D.load_records(tmp_path)


def test_cli(inputs, tmp_path, capsys):
    from simplefold.cli import main

    out = tmp_path / "cli"
    rc = main(["prepare-data", str(inputs), "-o", str(out), "-j", "1", "--no-progress", "--min-length", "10"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert '"files_error": 1' in printed and "broken.pdb.gz" in printed
    assert D.load_records(out)
