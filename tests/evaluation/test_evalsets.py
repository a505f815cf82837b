"""eval-set export: one reference per chain + a FASTA that predict and evaluate pair by name."""

from __future__ import annotations

from conftest import FIXTURES

from simplefold.cli import main
from simplefold.io.fasta import parse_fasta
from simplefold.io.structure import read_structure
from simplefold.io.dataset import PrepareOptions, prepare_dataset


def test_eval_set_writes_single_chain_references(tmp_path):
    files = [FIXTURES / "structures" / n for n in ("1HIA_l_u.pdb.gz", "8cny_A.cif.gz")]
    prepared = tmp_path / "prepared"
    prepare_dataset(files, prepared, options=PrepareOptions(), workers=1)
    out = tmp_path / "set"
    assert main(["eval-set", str(prepared), "--split", "all", "-o", str(out)]) == 0
    records = parse_fasta(out / "targets.fasta")
    assert records
    for rec in records:
        ref = read_structure(out / "references" / f"{rec.name}.pdb")
        assert len(ref.chains) == 1
        assert ref.chains[0].sequence == rec.sequence
