"""The one residue vocabulary of simplefold.

Three alphabets meet in SimpleFold and every conversion between them lives here:

* ``RES_TYPES`` – the official 33-token ``res_type`` vocabulary (Boltz ``const.tokens``):
  ``<pad>``, ``-``, the 20 amino acids in alphabetical 3-letter order, ``UNK``, RNA and DNA.
* ``AF2_RESTYPES`` – AlphaFold2 ``aatype`` order ``ARNDCQEGHILKMFPSTWYV`` (0..19), ``X`` = 20.
  SimpleFold encodes sequences for ESM in this order.
* ``ESM_ALPHABET`` – the fair-esm ESM-1b/ESM2 token alphabet (33 tokens).

Heavy-atom names per residue, their elements, formal charges and reference-conformer
coordinates come from the packaged ``assets/ref_conformers.json`` (the table the official
featurizer reads from Boltz's ``ccd.pkl``), so atom order is the official one: N, CA, C, O,
CB, side chain; no OXT, no hydrogens.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
from dataclasses import dataclass

import numpy as np

from simplefold.constants import NUM_ATOM_NAME_CHARS, NUM_CHAR_CLASSES, NUM_RES_TYPES

# --------------------------------------------------------------------------------------
# Amino acids
# --------------------------------------------------------------------------------------

#: The 20 standard amino acids, 1-letter code -> 3-letter code.
ONE_TO_THREE: dict[str, str] = {
    "A": "ALA", "R": "ARG", "N": "ASN", "D": "ASP", "C": "CYS", "Q": "GLN", "E": "GLU",
    "G": "GLY", "H": "HIS", "I": "ILE", "L": "LEU", "K": "LYS", "M": "MET", "F": "PHE",
    "P": "PRO", "S": "SER", "T": "THR", "W": "TRP", "Y": "TYR", "V": "VAL",
}
THREE_TO_ONE: dict[str, str] = {v: k for k, v in ONE_TO_THREE.items()} | {"UNK": "X"}

#: Letters accepted in a protein sequence that the official code maps to UNK.
UNKNOWN_LETTERS = frozenset("XBZJUO")
#: Every letter a protein sequence may contain (upper case).
VALID_SEQUENCE_LETTERS = frozenset(ONE_TO_THREE) | UNKNOWN_LETTERS

# --------------------------------------------------------------------------------------
# Official res_type vocabulary (33 tokens)
# --------------------------------------------------------------------------------------

RES_TYPES: tuple[str, ...] = (
    "<pad>", "-",
    "ALA", "ARG", "ASN", "ASP", "CYS", "GLN", "GLU", "GLY", "HIS",
    "ILE", "LEU", "LYS", "MET", "PHE", "PRO", "SER", "THR", "TRP", "TYR", "VAL",
    "UNK",
    "A", "G", "C", "U", "N",
    "DA", "DG", "DC", "DT", "DN",
)
assert len(RES_TYPES) == NUM_RES_TYPES
RES_TYPE_INDEX: dict[str, int] = {name: i for i, name in enumerate(RES_TYPES)}
UNK_RES_TYPE = RES_TYPE_INDEX["UNK"]  # 22
GAP_RES_TYPE = RES_TYPE_INDEX["-"]  # 1

#: Official letter -> token map (Boltz ``prot_letter_to_token``); anything else becomes UNK.
LETTER_TO_RES_NAME: dict[str, str] = dict(ONE_TO_THREE) | {c: "UNK" for c in UNKNOWN_LETTERS} | {"-": "-"}

# --------------------------------------------------------------------------------------
# AlphaFold2 aatype order
# --------------------------------------------------------------------------------------

AF2_RESTYPES = "ARNDCQEGHILKMFPSTWYV"
AF2_RESTYPES_WITH_X = AF2_RESTYPES + "X"
AF2_UNK = 20
AF2_INDEX: dict[str, int] = {c: i for i, c in enumerate(AF2_RESTYPES_WITH_X)}

# --------------------------------------------------------------------------------------
# ESM alphabet (fair-esm ``Alphabet.from_architecture("ESM-1b")``, used by every ESM2)
# --------------------------------------------------------------------------------------

ESM_ALPHABET: tuple[str, ...] = (
    "<cls>", "<pad>", "<eos>", "<unk>",
    "L", "A", "G", "V", "S", "E", "R", "T", "I", "D", "P", "K", "Q", "N",
    "F", "Y", "M", "H", "W", "C", "X", "B", "U", "Z", "O", ".", "-",
    "<null_1>", "<mask>",
)
ESM_INDEX: dict[str, int] = {tok: i for i, tok in enumerate(ESM_ALPHABET)}
ESM_CLS, ESM_PAD, ESM_EOS, ESM_UNK, ESM_MASK = 0, 1, 2, 3, 32

# --------------------------------------------------------------------------------------
# Conversion tables (numpy lookup arrays; index with an integer array)
# --------------------------------------------------------------------------------------

#: res_type index -> AF2 aatype (non-protein tokens -> X).
RES_TYPE_TO_AF2 = np.array(
    [AF2_INDEX[THREE_TO_ONE[n]] if n in THREE_TO_ONE else AF2_UNK for n in RES_TYPES], dtype=np.int32
)
#: AF2 aatype (0..20) -> res_type index.
AF2_TO_RES_TYPE = np.array(
    [RES_TYPE_INDEX[ONE_TO_THREE[c]] for c in AF2_RESTYPES] + [UNK_RES_TYPE], dtype=np.int32
)
#: (AF2 aatype + 1) -> ESM token; slot 0 is padding, as in ESMFold's ``af2_to_esm``.
AF2_PLUS_ONE_TO_ESM = np.array([ESM_PAD] + [ESM_INDEX[c] for c in AF2_RESTYPES_WITH_X], dtype=np.int32)


def letter_to_res_type(letter: str) -> int:
    """Map one sequence letter to its official ``res_type`` index (unknown letters -> UNK)."""
    return RES_TYPE_INDEX[LETTER_TO_RES_NAME.get(letter.upper(), "UNK")]


def sequence_to_af2(sequence: str) -> np.ndarray:
    """One-letter sequence -> AF2 aatype ids (L,) int32; anything outside the 20 letters -> X (20)."""
    return np.array([AF2_INDEX.get(c, AF2_UNK) for c in sequence.upper()], dtype=np.int32)


def res_name_to_one(res_name: str) -> str:
    """3-letter residue name -> 1-letter code (``X`` for anything non-standard)."""
    return THREE_TO_ONE.get(res_name, "X")


# --------------------------------------------------------------------------------------
# Heavy atoms and reference conformers
# --------------------------------------------------------------------------------------

#: Atomic numbers of the elements found in protein heavy atoms.
ELEMENT_TO_ATOMIC_NUMBER = {"C": 6, "N": 7, "O": 8, "P": 15, "S": 16, "SE": 34}
ATOMIC_NUMBER_TO_ELEMENT = {v: k for k, v in ELEMENT_TO_ATOMIC_NUMBER.items()}


@dataclass(frozen=True)
class ResidueTemplate:
    """Heavy atoms of one residue type in official order.

    Attributes:
      name: 3-letter code (or nucleotide code).
      atom_names: heavy-atom names, official order (N, CA, C, O, CB, ...).
      elements: element symbols, same order.
      atomic_numbers: (A,) int.
      charges: (A,) int formal charges.
      ref_pos: (A, 3) float32 reference-conformer coordinates in Å (CCD "Computed" frame).
    """

    name: str
    atom_names: tuple[str, ...]
    elements: tuple[str, ...]
    atomic_numbers: np.ndarray
    charges: np.ndarray
    ref_pos: np.ndarray

    @property
    def num_atoms(self) -> int:
        return len(self.atom_names)

    def atom_index(self, atom_name: str) -> int:
        return self.atom_names.index(atom_name)


@functools.cache
def residue_templates() -> dict[str, ResidueTemplate]:
    """All reference residues from the packaged conformer table, keyed by residue name."""
    raw = json.loads(importlib.resources.files("simplefold").joinpath("assets/ref_conformers.json").read_text())
    grouped: dict[str, list[dict]] = {}
    for row in raw:
        grouped.setdefault(row["aa"], []).append(row)
    out = {}
    for name, rows in grouped.items():
        z = np.array([r["elements"] for r in rows], dtype=np.int64)
        out[name] = ResidueTemplate(
            name=name,
            atom_names=tuple(r["atoms"] for r in rows),
            elements=tuple(ATOMIC_NUMBER_TO_ELEMENT.get(int(v), "X") for v in z),
            atomic_numbers=z,
            charges=np.array([r["charges"] for r in rows], dtype=np.int64),
            ref_pos=np.array([[r["confx"], r["confy"], r["confz"]] for r in rows], dtype=np.float32),
        )
    return out


def heavy_atom_names(res_name: str) -> tuple[str, ...]:
    """Heavy-atom names of a residue in official order (UNK for unknown residues)."""
    templates = residue_templates()
    return templates.get(res_name, templates["UNK"]).atom_names


#: Maximum heavy atoms of a standard amino acid (TRP).
MAX_ATOMS_PER_RESIDUE = 14

#: Common modified residues -> the standard residue they are read as.
MODIFIED_TO_STANDARD: dict[str, str] = {
    "MSE": "MET", "SEP": "SER", "TPO": "THR", "PTR": "TYR", "MLY": "LYS", "M3L": "LYS",
    "HYP": "PRO", "CSO": "CYS", "CSD": "CYS", "CME": "CYS", "OCS": "CYS", "CSS": "CYS",
    "KCX": "LYS", "LLP": "LYS", "MLZ": "LYS", "ALY": "LYS", "PCA": "GLU", "CGU": "GLU",
    "HIC": "HIS", "HID": "HIS", "HIE": "HIS", "HIP": "HIS", "HSD": "HIS", "HSE": "HIS",
    "HSP": "HIS", "NEP": "HIS", "CYX": "CYS", "CYM": "CYS", "ASH": "ASP", "GLH": "GLU",
    "LYN": "LYS", "SAC": "SER", "FME": "MET", "NLE": "LEU", "DAL": "ALA", "ABA": "ALA",
}
#: Atom renames applied with MODIFIED_TO_STANDARD (selenium of MSE becomes the sulfur of MET).
MODIFIED_ATOM_RENAMES: dict[tuple[str, str], tuple[str, str]] = {("MSE", "SE"): ("SD", "S")}


def encode_atom_name(name: str) -> np.ndarray:
    """Official atom-name encoding: each char -> (ord(c) - 32) mod 64, zero-padded to 4 chars. (4,) int."""
    name = name.strip()
    if len(name) > NUM_ATOM_NAME_CHARS:
        raise ValueError(f"atom name {name!r} longer than {NUM_ATOM_NAME_CHARS} characters")
    out = np.zeros(NUM_ATOM_NAME_CHARS, dtype=np.int64)
    for i, c in enumerate(name):
        out[i] = (ord(c) - 32) % NUM_CHAR_CLASSES
    return out
