"""The mmCIF categories around ``_atom_site`` that structure tools read, and the PDB records that
match them.

Written for every structure: ``_entry``, ``_entity``, ``_entity_poly`` (with the one-letter
sequence), ``_entity_poly_seq``, ``_struct_asym``, ``_pdbx_poly_seq_scheme``, ``_chem_comp``,
``_atom_type`` and ``_software``. For predictions that carry pLDDT, the ModelCIF QA categories
``_ma_qa_metric``, ``_ma_qa_metric_global`` (mean pLDDT) and ``_ma_qa_metric_local`` (per
residue, from the CA B-factor) as AlphaFold DB and Boltz files have them. DSSP needs the
entity/sequence categories to see residues at all; gemmi and biotite need them for the sequence.

Entities are the distinct chain sequences (chains with equal residue names share an entity).
``label_seq_id`` is the residue's 1-based position in its chain, the key of ``_entity_poly_seq``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from simplefold import residues

if TYPE_CHECKING:
    from simplefold.io.structure import Structure

#: ``Structure.method`` of a prediction made by this package (written as EXPDTA / _exptl-free ModelCIF).
PREDICTION_METHOD = "COMPUTATIONAL MODEL (simplefold)"

_CHEM_COMP_NAMES = {
    "ALA": "ALANINE", "ARG": "ARGININE", "ASN": "ASPARAGINE", "ASP": "ASPARTIC ACID", "CYS": "CYSTEINE",
    "GLN": "GLUTAMINE", "GLU": "GLUTAMIC ACID", "GLY": "GLYCINE", "HIS": "HISTIDINE", "ILE": "ISOLEUCINE",
    "LEU": "LEUCINE", "LYS": "LYSINE", "MET": "METHIONINE", "PHE": "PHENYLALANINE", "PRO": "PROLINE",
    "SER": "SERINE", "THR": "THREONINE", "TRP": "TRYPTOPHAN", "TYR": "TYROSINE", "VAL": "VALINE",
    "UNK": "UNKNOWN",
}


def entities(structure: "Structure") -> tuple[list[tuple[str, ...]], list[int]]:
    """(distinct residue-name sequences in first-seen order, entity index of each chain)."""
    seqs: list[tuple[str, ...]] = []
    of_chain = []
    for chain in structure.chains:
        names = tuple(chain.res_names)
        if names not in seqs:
            seqs.append(names)
        of_chain.append(seqs.index(names))
    return seqs, of_chain


def one_letter(res_names: tuple[str, ...]) -> str:
    return "".join(residues.res_name_to_one(r) for r in res_names)


def is_prediction_with_plddt(structure: "Structure") -> bool:
    return structure.method == PREDICTION_METHOD and any(float(np.abs(c.b_factors).max(initial=0)) > 0 for c in structure.chains)


def residue_plddt(chain) -> np.ndarray:
    """(L,) pLDDT of each residue: the CA B-factor (all atoms of a residue carry the same value)."""
    out = np.zeros(chain.num_residues, np.float64)
    for i in range(chain.num_residues):
        sl = chain.residue_atom_slice(i)
        names = chain.atom_names[sl]
        j = sl.start + (names.index("CA") if "CA" in names else 0)
        out[i] = float(chain.b_factors[j])
    return out


def categories(structure: "Structure", chain_ids: list[str], block: str, software_version: str) -> dict[str, dict[str, list[str]]]:
    """Category name -> column name -> values (strings), in file order."""
    seqs, of_chain = entities(structure)
    cats: dict[str, dict[str, list[str]]] = {}
    cats["entry"] = {"id": [block]}
    counts = [of_chain.count(e) for e in range(len(seqs))]
    cats["entity"] = {
        "id": [str(e + 1) for e in range(len(seqs))],
        "type": ["polymer"] * len(seqs),
        "src_method": ["syn" if structure.method == PREDICTION_METHOD else "?"] * len(seqs),
        "pdbx_description": ["?"] * len(seqs),
        "pdbx_number_of_molecules": [str(n) for n in counts],
    }
    cats["entity_poly"] = {
        "entity_id": [str(e + 1) for e in range(len(seqs))],
        "type": ["polypeptide(L)"] * len(seqs),
        "nstd_linkage": ["no"] * len(seqs),
        "nstd_monomer": ["no"] * len(seqs),
        "pdbx_seq_one_letter_code": [one_letter(s) for s in seqs],
        "pdbx_seq_one_letter_code_can": [one_letter(s) for s in seqs],
        "pdbx_strand_id": [",".join(c for c, e in zip(chain_ids, of_chain) if e == k) for k in range(len(seqs))],
    }
    eps = {"entity_id": [], "num": [], "mon_id": [], "hetero": []}
    for e, s in enumerate(seqs):
        for i, r in enumerate(s, 1):
            eps["entity_id"].append(str(e + 1))
            eps["num"].append(str(i))
            eps["mon_id"].append(r)
            eps["hetero"].append("n")
    cats["entity_poly_seq"] = eps
    cats["struct_asym"] = {"id": list(chain_ids), "entity_id": [str(e + 1) for e in of_chain]}
    sch = {k: [] for k in ("asym_id", "entity_id", "seq_id", "mon_id", "pdb_seq_num", "auth_seq_num", "pdb_mon_id",
                           "auth_mon_id", "pdb_strand_id", "pdb_ins_code", "hetero")}
    for chain, cid, e in zip(structure.chains, chain_ids, of_chain):
        for i in range(chain.num_residues):
            r, num = chain.res_names[i], str(int(chain.res_ids[i]))
            for k, v in (("asym_id", cid), ("entity_id", str(e + 1)), ("seq_id", str(i + 1)), ("mon_id", r),
                         ("pdb_seq_num", num), ("auth_seq_num", num), ("pdb_mon_id", r), ("auth_mon_id", r),
                         ("pdb_strand_id", cid), ("pdb_ins_code", chain.ins_codes[i] or "."), ("hetero", "n")):
                sch[k].append(v)
    cats["pdbx_poly_seq_scheme"] = sch
    comps = sorted({r for s in seqs for r in s})
    cats["chem_comp"] = {
        "id": comps,
        "type": ["L-peptide linking" if r != "GLY" else "peptide linking" for r in comps],
        "mon_nstd_flag": ["y" if r != "UNK" else "." for r in comps],
        "name": [_CHEM_COMP_NAMES.get(r, "?") for r in comps],
    }
    elements = sorted({el for c in structure.chains for el, m in zip(c.elements, c.atom_mask) if m} | {"O"})
    cats["atom_type"] = {"symbol": elements}
    cats["software"] = {
        "pdbx_ordinal": ["1"], "name": ["simplefold"], "version": [software_version],
        "type": ["package"], "classification": ["model building" if structure.method == PREDICTION_METHOD else "other"],
    }
    if is_prediction_with_plddt(structure):
        per_chain = [residue_plddt(c) for c in structure.chains]
        allres = np.concatenate(per_chain)
        cats["ma_qa_metric"] = {"id": ["1", "2"], "name": ["pLDDT", "pLDDT"], "mode": ["global", "local"],
                                "type": ["pLDDT", "pLDDT"], "software_group_id": [".", "."]}
        cats["ma_qa_metric_global"] = {"ordinal_id": ["1"], "model_id": ["1"], "metric_id": ["1"],
                                       "metric_value": [f"{allres.mean():.2f}"]}
        loc = {k: [] for k in ("ordinal_id", "model_id", "label_asym_id", "label_seq_id", "label_comp_id", "metric_id", "metric_value")}
        n = 0
        for chain, cid, vals in zip(structure.chains, chain_ids, per_chain):
            for i, v in enumerate(vals):
                n += 1
                for k, x in (("ordinal_id", str(n)), ("model_id", "1"), ("label_asym_id", cid), ("label_seq_id", str(i + 1)),
                             ("label_comp_id", chain.res_names[i]), ("metric_id", "2"), ("metric_value", f"{v:.2f}")):
                    loc[k].append(x)
        cats["ma_qa_metric_local"] = loc
    return cats


def label_columns(atoms, structure: "Structure", chain_ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(label_entity_id, label_seq_id) per written atom, consistent with :func:`categories`."""
    _, of_chain = entities(structure)
    index = {}
    for chain, cid, e in zip(structure.chains, chain_ids, of_chain):
        for i in range(chain.num_residues):
            index[(cid, int(chain.res_ids[i]), chain.ins_codes[i])] = (str(e + 1), str(i + 1))
    pairs = [index[(c, int(r), i)] for c, r, i in zip(atoms.chain_id, atoms.res_id, atoms.ins_code)]
    return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])


def seqres_records(structure: "Structure", chain_ids: list[str]) -> list[str]:
    """PDB SEQRES records (13 residues per line) for every chain."""
    lines = []
    for chain, cid in zip(structure.chains, chain_ids):
        names = list(chain.res_names)
        for k in range(0, len(names), 13):
            row = " ".join(f"{r:>3}" for r in names[k : k + 13])
            lines.append(f"SEQRES {k // 13 + 1:>3} {cid:1} {len(names):>4}  {row}".ljust(80).rstrip())
    return lines
