"""Protein structure I/O: PDB, mmCIF and BinaryCIF (plain or gzipped) to frozen dataclasses and back.

Reading keeps only what SimpleFold models: the protein chains, one atom slot per heavy atom of the
official residue template (:func:`simplefold.residues.heavy_atom_names`), absent atoms masked, never
invented. Alternate locations, modified residues, waters, ligands, nucleic acids, hydrogens, several
models, blank chain IDs and junk in PDB columns 77–80 are handled; anything unreadable raises
:class:`StructureError` with a one-line reason naming the file.

Writing goes through biotite, adds ``OXT`` on each chain's C-terminus and, for PDB, ``HEADER`` and
``CRYST1`` records so that DSSP-like tools accept the file.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import logging
import os
import pathlib
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from simplefold import residues
from simplefold.io import cif_metadata
from simplefold.utils.files import atomic_write_bytes

logger = logging.getLogger(__name__)

__all__ = [
    "Chain",
    "Structure",
    "StructureError",
    "read_structure",
    "read_structure_models",
    "write_structure",
    "structure_from_sequence",
    "structure_stem",
    "STRUCTURE_SUFFIXES",
]

#: Residue names read as water and dropped without further checks.
_WATER_NAMES = frozenset({"HOH", "WAT", "DOD", "H2O", "SOL", "TIP", "TIP3", "SPC"})
#: The 20 standard amino acids.
_STANDARD_RES_NAMES = frozenset(residues.ONE_TO_THREE.values())
#: Legacy / force-field atom names (residue or "*", name) -> template name; applied only when the
#: template name itself is absent from the residue.
_LEGACY_ATOM_NAMES = {("ILE", "CD"): "CD1", ("*", "OT1"): "O"}
#: Longest C–N distance (Å) still counted as a peptide bond when deciding whether a HETATM amino
#: acid is part of the chain (1.33 Å ideal; generous for poorly refined structures).
_PEPTIDE_BOND_MAX = 2.0
#: C=O / C–OXT bond length (Å) used to place the terminal OXT.
_CARBOXYL_BOND = 1.25
#: Spare chain IDs for chains written with a blank ID.
_CHAIN_ID_POOL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_FORMATS = {".pdb": "pdb", ".ent": "pdb", ".cif": "cif", ".mmcif": "cif", ".bcif": "bcif"}
#: Extensions of the structure files this module reads, each optionally followed by ``.gz``.
STRUCTURE_SUFFIXES = tuple(_FORMATS)
_COMPRESSION_SUFFIXES = (".gz",)


class StructureError(ValueError):
    """A structure file cannot be read or written; the message is ``"<path>: <one-line reason>"``."""


# --------------------------------------------------------------------------------------
# Data model
# --------------------------------------------------------------------------------------


def _frozen_array(x, dtype, shape_tail: tuple[int, ...] = ()) -> np.ndarray:
    arr = np.array(x, dtype=dtype, copy=True)
    if shape_tail and arr.shape[1:] != shape_tail:
        raise ValueError(f"expected shape (*, {', '.join(map(str, shape_tail))}), got {arr.shape}")
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class Chain:
    """One protein chain on the official heavy-atom layout.

    Attributes:
      chain_id: author chain ID; ``""`` for a blank ID in the input (the writer assigns one).
      res_names: (L,) 3-letter names after modified->standard mapping; unknown amino acids are ``UNK``.
      res_ids: (L,) int32 author residue numbers.
      ins_codes: (L,) insertion codes, ``""`` if none.
      atom_names: (A,) for each residue the full template atom list of
        :func:`simplefold.residues.heavy_atom_names` in official order (N, CA, C, O, CB, ...).
      elements: (A,) element symbols from the template.
      atom_residue: (A,) int32 index of the residue each atom belongs to (non-decreasing).
      coords: (A, 3) float32 coordinates in Å; 0 where the atom is absent.
      atom_mask: (A,) bool, True where the atom was present in the file.
      occupancy: (A,) float32 (0 for absent atoms).
      b_factors: (A,) float32 B-factors (pLDDT in predicted structures; 0 for absent atoms).
    """

    chain_id: str
    res_names: tuple[str, ...]
    res_ids: np.ndarray
    ins_codes: tuple[str, ...]
    atom_names: tuple[str, ...]
    elements: tuple[str, ...]
    atom_residue: np.ndarray
    coords: np.ndarray
    atom_mask: np.ndarray
    occupancy: np.ndarray
    b_factors: np.ndarray

    def __post_init__(self):
        set_ = object.__setattr__
        set_(self, "res_names", tuple(self.res_names))
        set_(self, "ins_codes", tuple(self.ins_codes))
        set_(self, "atom_names", tuple(self.atom_names))
        set_(self, "elements", tuple(self.elements))
        set_(self, "res_ids", _frozen_array(self.res_ids, np.int32))
        set_(self, "atom_residue", _frozen_array(self.atom_residue, np.int32))
        set_(self, "coords", _frozen_array(self.coords, np.float32, (3,)))
        set_(self, "atom_mask", _frozen_array(self.atom_mask, bool))
        set_(self, "occupancy", _frozen_array(self.occupancy, np.float32))
        set_(self, "b_factors", _frozen_array(self.b_factors, np.float32))
        n_res, n_atoms = len(self.res_names), len(self.atom_names)
        for name, length, want in (
            ("res_ids", len(self.res_ids), n_res),
            ("ins_codes", len(self.ins_codes), n_res),
            ("elements", len(self.elements), n_atoms),
            ("atom_residue", len(self.atom_residue), n_atoms),
            ("coords", len(self.coords), n_atoms),
            ("atom_mask", len(self.atom_mask), n_atoms),
            ("occupancy", len(self.occupancy), n_atoms),
            ("b_factors", len(self.b_factors), n_atoms),
        ):
            if length != want:
                raise ValueError(f"chain {self.chain_id!r}: {name} has length {length}, expected {want}")
        if n_atoms and (np.any(np.diff(self.atom_residue) < 0) or self.atom_residue[-1] >= n_res):
            raise ValueError(f"chain {self.chain_id!r}: atom_residue must be sorted indices below {n_res}")
        starts = np.searchsorted(self.atom_residue, np.arange(n_res + 1)).astype(np.int64)
        starts.setflags(write=False)
        set_(self, "_residue_starts", starts)

    @property
    def sequence(self) -> str:
        """One-letter sequence, ``X`` for ``UNK``."""
        return "".join(residues.res_name_to_one(r) for r in self.res_names)

    @property
    def num_residues(self) -> int:
        return len(self.res_names)

    @property
    def num_atoms(self) -> int:
        return len(self.atom_names)

    @property
    def residue_starts(self) -> np.ndarray:
        """(L + 1,) atom offsets: residue ``i`` owns atoms ``residue_starts[i]:residue_starts[i + 1]``."""
        return self._residue_starts  # type: ignore[attr-defined]

    def residue_atom_slice(self, i: int) -> slice:
        """Slice of the flat atom arrays that belongs to residue ``i``."""
        if not -self.num_residues <= i < self.num_residues:
            raise IndexError(f"residue index {i} out of range for {self.num_residues} residues")
        i %= self.num_residues
        return slice(int(self.residue_starts[i]), int(self.residue_starts[i + 1]))

    def atom_coords(self, atom_name: str) -> tuple[np.ndarray, np.ndarray]:
        """Coordinates of one named atom per residue (e.g. ``"CA"``).

        Returns:
          coords (L, 3) float32 Å (0 where absent or the residue has no such atom) and mask (L,) bool.
        """
        coords = np.zeros((self.num_residues, 3), np.float32)
        mask = np.zeros(self.num_residues, bool)
        names = np.asarray(self.atom_names)
        idx = np.flatnonzero(names == atom_name)
        res = self.atom_residue[idx]
        coords[res] = self.coords[idx]
        mask[res] = self.atom_mask[idx]
        return coords, mask


@dataclass(frozen=True, eq=False)
class Structure:
    """A protein structure: one or more chains of one model.

    Attributes:
      name: target name (file stem without ``.pdb``/``.cif``/``.bcif``/``.gz``).
      chains: the protein chains in file order.
      source: path the structure was read from, if any.
      resolution: resolution in Å when the header states it.
      method: experimental method, e.g. ``"X-RAY DIFFRACTION"``.
    """

    name: str
    chains: tuple[Chain, ...]
    source: str | None = None
    resolution: float | None = None
    method: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "chains", tuple(self.chains))

    def chain(self, chain_id: str) -> Chain:
        """The chain with this ID (``KeyError`` naming the available IDs if absent)."""
        for c in self.chains:
            if c.chain_id == chain_id:
                return c
        raise KeyError(f"{self.name}: no chain {chain_id!r} (chains: {[c.chain_id for c in self.chains]})")

    @property
    def chain_ids(self) -> tuple[str, ...]:
        return tuple(c.chain_id for c in self.chains)

    @property
    def sequences(self) -> tuple[str, ...]:
        """One-letter sequence per chain."""
        return tuple(c.sequence for c in self.chains)

    @property
    def num_residues(self) -> int:
        return sum(c.num_residues for c in self.chains)

    @property
    def num_atoms(self) -> int:
        return sum(c.num_atoms for c in self.chains)

    @property
    def coords(self) -> np.ndarray:
        """(A, 3) float32 coordinates of all chains concatenated (Å)."""
        return np.concatenate([c.coords for c in self.chains]) if self.chains else np.zeros((0, 3), np.float32)

    @property
    def atom_mask(self) -> np.ndarray:
        """(A,) bool present-atom mask of all chains concatenated."""
        return np.concatenate([c.atom_mask for c in self.chains]) if self.chains else np.zeros(0, bool)

    def with_coords(
        self,
        coords: np.ndarray,
        *,
        b_factors: np.ndarray | None = None,
        atom_mask: np.ndarray | None = None,
        name: str | None = None,
    ) -> Structure:
        """A copy with new coordinates, e.g. a prediction on this structure's atom layout.

        Args:
          coords: (A, 3) Å over all chains concatenated (``A = self.num_atoms``).
          b_factors: optional (A,) per-atom or (L,) per-residue values (pLDDT); kept if None.
          atom_mask: optional (A,) bool; kept if None (pass all-True for a full prediction).
          name: new name; kept if None.
        """
        coords = np.asarray(coords, np.float32)
        if coords.shape != (self.num_atoms, 3):
            raise ValueError(f"{self.name}: coords must have shape ({self.num_atoms}, 3), got {coords.shape}")
        per_atom_b = None if b_factors is None else _per_atom(b_factors, self.num_residues, self.num_atoms, self)
        if atom_mask is not None:
            atom_mask = np.asarray(atom_mask, bool)
            if atom_mask.shape != (self.num_atoms,):
                raise ValueError(f"{self.name}: atom_mask must have shape ({self.num_atoms},), got {atom_mask.shape}")
        chains, a0 = [], 0
        for c in self.chains:
            sl = slice(a0, a0 + c.num_atoms)
            mask = c.atom_mask if atom_mask is None else atom_mask[sl]
            # atoms that become present (a prediction) get full occupancy
            occupancy = c.occupancy
            if atom_mask is not None:
                occupancy = np.where(mask, np.where(c.atom_mask, c.occupancy, 1.0), 0.0)
            chains.append(
                dataclasses.replace(
                    c,
                    coords=np.where(mask[:, None], coords[sl], 0.0),
                    atom_mask=mask,
                    occupancy=occupancy,
                    b_factors=c.b_factors if per_atom_b is None else per_atom_b[sl],
                )
            )
            a0 += c.num_atoms
        return dataclasses.replace(self, chains=tuple(chains), name=self.name if name is None else name)


def _per_atom(values, num_residues: int, num_atoms: int, structure: Structure) -> np.ndarray:
    """Broadcast (L,) per-residue values to (A,) atoms; pass (A,) through."""
    values = np.asarray(values, np.float32)
    if values.shape == (num_atoms,):
        return values
    if values.shape == (num_residues,):
        offsets = np.cumsum([0] + [c.num_residues for c in structure.chains[:-1]])
        atom_res = np.concatenate([c.atom_residue + o for c, o in zip(structure.chains, offsets)])
        return values[atom_res]
    raise ValueError(f"b_factors must have shape ({num_atoms},) or ({num_residues},), got {values.shape}")


def _chain_from_residues(
    chain_id: str,
    res_names: Sequence[str],
    res_ids: Sequence[int],
    ins_codes: Sequence[str],
    atoms: Sequence[dict[str, tuple[np.ndarray, float, float]]] | None = None,
) -> Chain:
    """Lay residues out on the template atom lists; ``atoms[i]`` maps atom name -> (xyz, occ, b)."""
    atom_names: list[str] = []
    elements: list[str] = []
    atom_residue: list[int] = []
    for i, r in enumerate(res_names):
        tmpl = _template(r)
        atom_names.extend(tmpl.atom_names)
        elements.extend(tmpl.elements)
        atom_residue.extend([i] * tmpl.num_atoms)
    n = len(atom_names)
    coords = np.zeros((n, 3), np.float32)
    mask = np.zeros(n, bool)
    occ = np.zeros(n, np.float32)
    bfac = np.zeros(n, np.float32)
    if atoms is not None:
        a = 0
        for i, r in enumerate(res_names):
            tmpl = _template(r)
            present = atoms[i]
            for j, atom_name in enumerate(tmpl.atom_names):
                hit = present.get(atom_name)
                if hit is not None:
                    coords[a + j], occ[a + j], bfac[a + j] = hit
                    mask[a + j] = True
            a += tmpl.num_atoms
    return Chain(
        chain_id=chain_id,
        res_names=tuple(res_names),
        res_ids=np.asarray(res_ids, np.int32),
        ins_codes=tuple(ins_codes),
        atom_names=tuple(atom_names),
        elements=tuple(elements),
        atom_residue=np.asarray(atom_residue, np.int32),
        coords=coords,
        atom_mask=mask,
        occupancy=occ,
        b_factors=bfac,
    )


def _template(res_name: str) -> residues.ResidueTemplate:
    templates = residues.residue_templates()
    return templates.get(res_name, templates["UNK"])


def structure_from_sequence(
    sequence: str,
    coords: np.ndarray,
    *,
    name: str,
    chain_id: str = "A",
    b_factors: np.ndarray | None = None,
) -> Structure:
    """Build a structure from a sequence and flat heavy-atom coordinates (how predictions become files).

    Args:
      sequence: one-letter sequence; ``:`` separates chains (named ``chain_id`` and the IDs after it).
        Letters outside the 20 standard ones become ``UNK``.
      coords: (A, 3) Å in the official template atom order of the residues, chains concatenated.
      name: structure name.
      chain_id: ID of the first chain.
      b_factors: optional (A,) per-atom or (L,) per-residue values (pLDDT, 0–100).

    Returns:
      A :class:`Structure` with every atom present, occupancy 1 and residues numbered from 1.
    """
    parts = sequence.upper().split(":")
    if any(not p for p in parts):
        raise ValueError(f"{name}: empty chain in sequence {sequence!r}")
    if len(parts) == 1:
        chain_ids = [chain_id]
    else:
        start = _CHAIN_ID_POOL.find(chain_id) if len(chain_id) == 1 else -1
        if start < 0 or start + len(parts) > len(_CHAIN_ID_POOL):
            raise ValueError(f"{name}: cannot name {len(parts)} chains starting at chain ID {chain_id!r}")
        chain_ids = list(_CHAIN_ID_POOL[start : start + len(parts)])
    chains = []
    for cid, part in zip(chain_ids, parts):
        res_names = [residues.LETTER_TO_RES_NAME.get(c, "UNK") for c in part]
        res_names = [r if r in _STANDARD_RES_NAMES else "UNK" for r in res_names]
        chains.append(_chain_from_residues(cid, res_names, range(1, len(part) + 1), [""] * len(part)))
    skeleton = Structure(name=name, chains=tuple(chains), method=cif_metadata.PREDICTION_METHOD)
    coords = np.asarray(coords, np.float32)
    if coords.shape != (skeleton.num_atoms, 3):
        raise ValueError(
            f"{name}: sequence of {skeleton.num_residues} residues has {skeleton.num_atoms} heavy atoms, "
            f"coords have shape {coords.shape}"
        )
    b = np.zeros(skeleton.num_atoms, np.float32) if b_factors is None else b_factors
    return skeleton.with_coords(coords, b_factors=b, atom_mask=np.ones(skeleton.num_atoms, bool))


# --------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------


def _split_name(path: str | os.PathLike) -> tuple[str, str | None]:
    """(file name without compression and structure extensions, format) of a path; format None
    (and the name without compression extension) when it has no structure extension."""
    name = pathlib.Path(path).name
    for suffix in _COMPRESSION_SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    stem, ext = os.path.splitext(name)
    fmt = _FORMATS.get(ext.lower())
    return (stem, fmt) if fmt is not None and stem else (name, None)


def structure_stem(path: str | os.PathLike) -> str | None:
    """The file name without its structure and compression extensions (``T1026.pdb.gz`` -> ``T1026``),
    or None when the name has no structure extension (see :data:`STRUCTURE_SUFFIXES`)."""
    stem, fmt = _split_name(path)
    return stem if fmt is not None else None


def _structure_name(path: pathlib.Path) -> str:
    return _split_name(path)[0]


def _format_from_name(path: pathlib.Path) -> str | None:
    return _split_name(path)[1]


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    msg = text[0] if text else ""
    msg = msg if len(msg) <= 200 else msg[:197] + "..."
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def _read_bytes(path: pathlib.Path) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise StructureError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise StructureError(f"{path}: is a directory, not a structure file") from None
    except OSError as e:
        raise StructureError(f"{path}: cannot read file ({_one_line(e)})") from None
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            raise StructureError(f"{path}: corrupt or truncated gzip data ({_one_line(e)})") from None
    if not data.strip():
        raise StructureError(f"{path}: empty file")
    return data


def _looks_binary(data: bytes) -> bool:
    head = data[:65536]
    if b"\x00" in head:
        return True
    text_bytes = bytes(range(32, 127)) + b"\t\n\r\f\v"
    odd = len(head.translate(None, text_bytes))
    return odd > 0.05 * len(head)


def _sniff_format(path: pathlib.Path, data: bytes) -> str:
    """``"bcif"`` by extension or a msgpack map at the start; otherwise PDB vs mmCIF by content
    (a mislabelled text file is still read), falling back to the extension."""
    fmt = _format_from_name(path)
    if fmt == "bcif" or (fmt is None and data[:1] and (0x80 <= data[0] <= 0x8F or data[0] in (0xDE, 0xDF))):
        return "bcif"
    for line in data[:65536].splitlines():
        line = line.strip()
        if not line or line.startswith(b"#"):
            continue
        if line[:5].lower() == b"data_":
            return "cif"
        if line[:6] in (b"HEADER", b"ATOM  ", b"HETATM", b"REMARK", b"MODEL ", b"CRYST1", b"TITLE ", b"EXPDTA"):
            return "pdb"
        break
    return fmt or "pdb"


class _PDBSource:
    """A parsed PDB file: cleaned text handed to biotite, header fields read here."""

    def __init__(self, path: pathlib.Path, text: str):
        from biotite.structure.io import pdb as biotite_pdb

        lines = text.splitlines()
        cleaned = []
        n_atom_lines = 0
        self.resolution: float | None = None
        self.method: str | None = None
        for lineno, line in enumerate(lines, 1):
            record = line[:6]
            if record in ("ATOM  ", "HETATM"):
                cleaned.append(_clean_atom_line(path, lineno, line))
                n_atom_lines += 1
            elif record.rstrip() in ("MODEL", "ENDMDL", "TER", "END"):
                cleaned.append(line.rstrip())
            elif record == "EXPDTA" and self.method is None:
                self.method = line[10:79].strip().rstrip(";") or None
            elif line.startswith("REMARK   2 RESOLUTION.") and self.resolution is None:
                self.resolution = _parse_pdb_resolution(line)
        if n_atom_lines == 0:
            raise StructureError(f"{path}: no ATOM/HETATM records (not a PDB coordinate file?)")
        self._file = biotite_pdb.PDBFile.read(io.StringIO("\n".join(cleaned) + "\n"))

    def model_count(self) -> int:
        return self._file.get_model_count()

    def atoms(self, model: int):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "elements were guessed": we use template elements
            return self._file.get_structure(model=model, altloc="all", extra_fields=["b_factor", "occupancy"])


def _clean_atom_line(path: pathlib.Path, lineno: int, line: str) -> str:
    """Normalise one ATOM/HETATM line to 80 columns with sane element/charge columns.

    Some files carry segment IDs or serial numbers in columns 73–80 (e.g. DB5.5); the element and
    charge columns are blanked unless they hold an element symbol and a charge like ``1+``.
    """
    line = line.rstrip("\r\n")
    if len(line.rstrip()) < 54:
        raise StructureError(f"{path}: truncated {line[:6].strip()} record at line {lineno} (no x/y/z coordinates)")
    line = line.ljust(80)[:80]
    occ, bfac, element, charge = line[54:60], line[60:66], line[76:78], line[78:80]
    if not occ.strip():
        occ = "  1.00"
    if not bfac.strip():
        bfac = "  0.00"
    if not element.strip().isalpha():
        element = "  "
    if charge.strip() and not (charge[0].isdigit() and charge[1] in "+-"):
        charge = "  "
    return line[:54] + occ + bfac + line[66:76] + element + charge


def _parse_pdb_resolution(line: str) -> float | None:
    for token in line[22:].split():
        try:
            return float(token)
        except ValueError:
            continue
    return None


class _CIFSource:
    """A parsed mmCIF or BinaryCIF file (first data block)."""

    def __init__(self, path: pathlib.Path, data: bytes, binary: bool):
        from biotite.structure.io import pdbx

        self._pdbx = pdbx
        if binary:
            self._file = pdbx.BinaryCIFFile.read(io.BytesIO(data))
        else:
            self._file = pdbx.CIFFile.read(io.StringIO(data.decode("utf-8", errors="replace")))
        if not len(self._file):
            raise StructureError(f"{path}: no data block")
        self._block_name = next(iter(self._file.keys()))  # first block; later ones are ignored
        block = self._file[self._block_name]
        if "atom_site" not in block:
            raise StructureError(f"{path}: no atom_site category (no coordinates)")
        self.method = _cif_value(block, "exptl", "method")
        self.resolution = None
        for category, field in (
            ("refine", "ls_d_res_high"),
            ("reflns", "d_resolution_high"),
            ("em_3d_reconstruction", "resolution"),
        ):
            value = _cif_value(block, category, field)
            try:
                self.resolution = float(value) if value is not None else None
            except ValueError:
                self.resolution = None
            if self.resolution is not None:
                break

    def model_count(self) -> int:
        return self._pdbx.get_model_count(self._file, data_block=self._block_name)

    def atoms(self, model: int):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # fallbacks from auth_* to label_* fields are fine
            return self._pdbx.get_structure(
                self._file,
                model=model,
                data_block=self._block_name,
                altloc="all",
                extra_fields=["b_factor", "occupancy"],
                use_author_fields=True,
            )


def _cif_value(block, category: str, field: str) -> str | None:
    """First value of ``_category.field``, or None if absent or unknown ('?', '.')."""
    if category not in block or field not in block[category]:
        return None
    values = block[category][field].as_array(str)
    if not len(values):
        return None
    value = str(values[0]).strip()
    return None if value in ("", "?", ".") else value


def _open_source(path: pathlib.Path):
    data = _read_bytes(path)
    fmt = _sniff_format(path, data)
    if fmt == "bcif":
        return _CIFSource(path, data, binary=True)
    if _looks_binary(data):
        raise StructureError(f"{path}: binary content, not a {fmt.upper()} text file")
    if fmt == "cif":
        return _CIFSource(path, data, binary=False)
    return _PDBSource(path, data.decode("utf-8", errors="replace"))


def _residue_blocks(atoms) -> list[tuple[int, int]]:
    """Maximal runs of atoms sharing (chain, res_id, ins_code): one run per residue (altlocs included)."""
    n = atoms.array_length()
    if n == 0:
        return []
    chain, res_id, ins = atoms.chain_id, atoms.res_id, atoms.ins_code
    change = (chain[1:] != chain[:-1]) | (res_id[1:] != res_id[:-1]) | (ins[1:] != ins[:-1])
    starts = np.concatenate([[0], np.flatnonzero(change) + 1, [n]])
    return list(zip(starts[:-1].tolist(), starts[1:].tolist()))


@dataclass
class _Residue:
    chain_id: str
    res_name: str  # standard name after mapping, or UNK
    res_id: int
    ins_code: str
    hetero: bool
    atoms: dict[str, tuple[np.ndarray, float, float]]


def _amino_acid_kind(res_name: str, atom_names: set[str], hetero: bool) -> str | None:
    """Standard name this residue is read as, or None if it is not part of a protein chain."""
    if res_name in _WATER_NAMES:
        return None
    std = residues.MODIFIED_TO_STANDARD.get(res_name, res_name)
    if std in _STANDARD_RES_NAMES or std == "UNK":
        return std
    if _is_ccd_amino_acid(res_name) and "CA" in atom_names:
        return "UNK"
    if not hetero and {"N", "CA", "C"} <= atom_names:
        return "UNK"  # an unknown polymer residue in ATOM records
    return None


def _is_ccd_amino_acid(res_name: str) -> bool:
    from biotite.structure import info

    return res_name in info.amino_acid_names()


def _collect_residues(atoms) -> list[_Residue]:
    """Group one model's atoms into amino-acid residues with per-atom altloc resolution."""
    chain_ids = atoms.chain_id.tolist()
    res_ids = atoms.res_id.tolist()
    ins_codes = atoms.ins_code.tolist()
    res_names = atoms.res_name.tolist()
    atom_names = atoms.atom_name.tolist()
    hetero = atoms.hetero.tolist()
    occupancy = atoms.occupancy.astype(np.float32)
    b_factor = atoms.b_factor.astype(np.float32)
    coords = atoms.coord.astype(np.float32)

    out: list[_Residue] = []
    for start, stop in _residue_blocks(atoms):
        names_here = res_names[start:stop]
        if names_here[0] in _WATER_NAMES:
            continue
        # Microheterogeneity: several residue types at one position; keep the most occupied one.
        chosen = names_here[0]
        if len(set(names_here)) > 1:
            score: dict[str, float] = {}
            for k in range(start, stop):
                score[res_names[k]] = score.get(res_names[k], 0.0) + float(occupancy[k])
            chosen = max(score, key=lambda r: (score[r], -names_here.index(r)))
        idx = [k for k in range(start, stop) if res_names[k] == chosen]
        is_het = all(hetero[k] for k in idx)
        std = _amino_acid_kind(chosen, {atom_names[k].strip() for k in idx}, is_het)
        if std is None:
            continue
        template = set(_template(std).atom_names)
        found: dict[str, tuple[np.ndarray, float, float]] = {}
        for k in idx:
            name = atom_names[k].strip()
            rename = residues.MODIFIED_ATOM_RENAMES.get((chosen, name))
            if rename is not None:
                name = rename[0]
            if name not in template:
                continue
            prev = found.get(name)
            # alternate locations: keep the highest-occupancy copy of each atom (first on ties)
            if prev is None or occupancy[k] > prev[1]:
                found[name] = (coords[k], float(occupancy[k]), float(b_factor[k]))
        for k in idx:
            legacy = _LEGACY_ATOM_NAMES.get((std, atom_names[k].strip())) or _LEGACY_ATOM_NAMES.get(
                ("*", atom_names[k].strip())
            )
            if legacy is not None and legacy in template and legacy not in found:
                found[legacy] = (coords[k], float(occupancy[k]), float(b_factor[k]))
        if not found:
            continue  # e.g. a residue of hydrogens only
        out.append(_Residue(chain_ids[start], std, res_ids[start], ins_codes[start], is_het, found))
    return out


def _is_peptide_bonded(a: _Residue, b: _Residue) -> bool:
    c, n = a.atoms.get("C"), b.atoms.get("N")
    return c is not None and n is not None and float(np.linalg.norm(c[0] - n[0])) <= _PEPTIDE_BOND_MAX


def _place_hetero_residues(res: list[_Residue]) -> list[_Residue]:
    """Order one chain's residues, keeping HETATM amino acids only where they are part of the polymer.

    ATOM residues and HETATM residues lying between them keep their file order. Other HETATM amino
    acids (modified residues at a terminus, or listed after the chain as some files do) are inserted
    next to the residue they are peptide-bonded to, or dropped as ligands if bonded to none. A chain
    without ATOM residues keeps the HETATM residues that are peptide-bonded to a file neighbour.
    """
    polymer_idx = [i for i, r in enumerate(res) if not r.hetero]
    if not polymer_idx:
        return [
            r
            for i, r in enumerate(res)
            if (i > 0 and _is_peptide_bonded(res[i - 1], r)) or (i + 1 < len(res) and _is_peptide_bonded(r, res[i + 1]))
        ]
    first, last = polymer_idx[0], polymer_idx[-1]
    placed = res[first : last + 1]
    pending = res[:first] + res[last + 1 :]
    progress = True
    while pending and progress:
        progress = False
        for r in list(pending):
            for j, q in enumerate(placed):
                if _is_peptide_bonded(q, r) or _is_peptide_bonded(r, q):
                    placed.insert(j + 1 if _is_peptide_bonded(q, r) else j, r)
                    pending.remove(r)
                    progress = True
                    break
    return placed


def _build_chains(residue_list: list[_Residue]) -> list[Chain]:
    """Residues -> chains in order of first appearance (duplicate residue numbers keep the first)."""
    by_chain: dict[str, list[_Residue]] = {}
    for r in residue_list:
        by_chain.setdefault(r.chain_id, []).append(r)
    chains = []
    for chain_id, res in by_chain.items():
        kept: list[_Residue] = []
        seen: set[tuple[int, str]] = set()
        for r in _place_hetero_residues(res):
            key = (r.res_id, r.ins_code)
            if key in seen:
                logger.debug("chain %r: duplicate residue %s%s dropped", chain_id, *key)
                continue
            seen.add(key)
            kept.append(r)
        if not kept:
            continue
        chains.append(
            _chain_from_residues(
                chain_id,
                [r.res_name for r in kept],
                [r.res_id for r in kept],
                [r.ins_code for r in kept],
                [r.atoms for r in kept],
            )
        )
    return chains


def _structure_from_atoms(path: pathlib.Path, source, atoms, chains: Sequence[str] | None) -> Structure:
    built = _build_chains(_collect_residues(atoms))
    if chains is not None:
        available = [c.chain_id for c in built]
        missing = [c for c in chains if c not in available]
        if missing:
            raise StructureError(f"{path}: chain(s) {missing} not found among protein chains {available}")
        wanted = list(chains)
        built = sorted((c for c in built if c.chain_id in wanted), key=lambda c: wanted.index(c.chain_id))
    if not built:
        raise StructureError(f"{path}: no protein chain (no amino-acid residues with heavy atoms)")
    return Structure(
        name=_structure_name(path),
        chains=tuple(built),
        source=str(path),
        resolution=source.resolution,
        method=source.method,
    )


def _guarded(path: pathlib.Path, fn):
    """Run ``fn`` turning any failure on bad input into a one-line StructureError naming the file."""
    try:
        return fn()
    except StructureError:
        raise
    except Exception as e:  # noqa: BLE001 - biotite/numpy raise many types on malformed files
        logger.debug("failed to read %s", path, exc_info=True)
        raise StructureError(f"{path}: cannot parse structure ({_one_line(e)})") from e


def read_structure(path, *, model: int = 1, chains: Sequence[str] | None = None) -> Structure:
    """Read one model of a PDB / mmCIF / BinaryCIF file (optionally gzipped).

    Args:
      path: file path; the format comes from the extension (``.pdb``, ``.ent``, ``.cif``, ``.mmcif``,
        ``.bcif``, each optionally ``.gz``) or is sniffed from the content.
      model: 1-based model number.
      chains: keep only these chain IDs, in this order (all protein chains if None).

    Returns:
      A :class:`Structure` of the protein chains.

    Raises:
      StructureError: unreadable file, no such model or chain, or no protein chain.
    """
    path = pathlib.Path(path)

    def run():
        source = _open_source(path)
        n_models = source.model_count()
        if not 1 <= model <= n_models:
            raise StructureError(f"{path}: model {model} requested but the file has {n_models} model(s)")
        return _structure_from_atoms(path, source, source.atoms(model), chains)

    return _guarded(path, run)


def read_structure_models(path, *, chains: Sequence[str] | None = None) -> list[Structure]:
    """Read every model of a file (e.g. an NMR ensemble), as :func:`read_structure` reads one."""
    path = pathlib.Path(path)

    def run():
        source = _open_source(path)
        return [
            _structure_from_atoms(path, source, source.atoms(m), chains) for m in range(1, source.model_count() + 1)
        ]

    return _guarded(path, run)


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------


def _terminal_oxt(chain: Chain) -> np.ndarray | None:
    """Position of the C-terminal OXT from the last residue's CA, C and O, or None if one is absent.

    The carboxyl carbon is trigonal planar, so OXT lies in the CA–C–O plane opposite the bisector
    of the C->CA and C->O directions.
    """
    if chain.num_residues == 0:
        return None
    sl = chain.residue_atom_slice(chain.num_residues - 1)
    names = chain.atom_names[sl]
    pos = {}
    for atom in ("CA", "C", "O"):
        if atom not in names:
            return None
        j = sl.start + names.index(atom)
        if not chain.atom_mask[j]:
            return None
        pos[atom] = chain.coords[j].astype(np.float64)
    u_ca = pos["CA"] - pos["C"]
    u_o = pos["O"] - pos["C"]
    u_ca /= np.linalg.norm(u_ca) + 1e-12
    u_o /= np.linalg.norm(u_o) + 1e-12
    d = -(u_ca + u_o)
    norm = np.linalg.norm(d)
    if norm < 1e-6:
        return None
    return (pos["C"] + _CARBOXYL_BOND * d / norm).astype(np.float32)


def _output_chain_ids(structure: Structure) -> list[str]:
    used = {c.chain_id for c in structure.chains if c.chain_id}
    spare = (c for c in _CHAIN_ID_POOL if c not in used)
    out = []
    for c in structure.chains:
        if c.chain_id:
            out.append(c.chain_id)
        else:
            try:
                out.append(next(spare))
            except StopIteration:
                raise ValueError(f"{structure.name}: too many chains to assign IDs to blank chains") from None
    return out


def _to_atom_array(structure: Structure):
    """Structure -> biotite AtomArray of present atoms plus a terminal OXT per chain."""
    import biotite.structure as struc

    rows = []  # (chain_id, res_id, ins, res_name, atom_name, element, xyz, occ, b)
    for chain, cid in zip(structure.chains, _output_chain_ids(structure)):
        oxt = _terminal_oxt(chain)
        for i in range(chain.num_residues):
            sl = chain.residue_atom_slice(i)
            c_occ = c_b = None
            for j in range(sl.start, sl.stop):
                if not chain.atom_mask[j]:
                    continue
                rows.append((cid, int(chain.res_ids[i]), chain.ins_codes[i], chain.res_names[i], chain.atom_names[j],
                             chain.elements[j], chain.coords[j], float(chain.occupancy[j]), float(chain.b_factors[j])))
                if chain.atom_names[j] == "C":
                    c_occ, c_b = float(chain.occupancy[j]), float(chain.b_factors[j])
            if i == chain.num_residues - 1 and oxt is not None:
                rows.append((cid, int(chain.res_ids[i]), chain.ins_codes[i], chain.res_names[i], "OXT", "O", oxt,
                             c_occ, c_b))
    arr = struc.AtomArray(len(rows))
    if rows:
        arr.chain_id = np.array([r[0] for r in rows])
        arr.res_id = np.array([r[1] for r in rows], dtype=int)
        arr.ins_code = np.array([r[2] for r in rows])
        arr.res_name = np.array([r[3] for r in rows])
        arr.atom_name = np.array([r[4] for r in rows])
        arr.element = np.array([r[5] for r in rows])
        arr.coord = np.array([r[6] for r in rows], dtype=np.float32)
    arr.hetero = np.zeros(len(rows), bool)
    arr.add_annotation("occupancy", float)
    arr.add_annotation("b_factor", float)
    if rows:
        # two decimals, as in PDB files: float32 values would otherwise print as 34.03300094604492 in CIF
        arr.occupancy = np.round(np.array([r[7] for r in rows], dtype=np.float64), 2)
        arr.b_factor = np.round(np.array([r[8] for r in rows], dtype=np.float64), 2)
    return arr


def _same_atoms(a, b) -> bool:
    return all(
        np.array_equal(getattr(a, k), getattr(b, k))
        for k in ("chain_id", "res_id", "ins_code", "res_name", "atom_name", "element")
    )


def _pdb_header(structure: Structure, n_models: int) -> list[str]:
    # no date: identical inputs give byte-identical files
    title = structure.name if n_models == 1 else f"{structure.name}, ensemble of {n_models} models"
    lines = [
        f"HEADER    {'PROTEIN':<40}{'':>9}   {'XXXX':4}".rstrip(),
        f"TITLE     {title[:70]}",
    ]
    if structure.method:
        lines.append(f"EXPDTA    {structure.method[:70]}")
    if structure.resolution is not None:
        lines.append(f"REMARK   2 RESOLUTION. {structure.resolution:7.2f} ANGSTROMS.")
    lines += cif_metadata.seqres_records(structure, _output_chain_ids(structure))
    lines.append("CRYST1    1.000    1.000    1.000  90.00  90.00  90.00 P 1           1")
    return lines


def _with_ter(body: list[str]) -> list[str]:
    """PDB body lines with a TER record after the last atom of each chain in each model."""
    out: list[str] = []
    serial = 0
    for k, line in enumerate(body):
        out.append(line)
        if line.startswith(("ATOM  ", "HETATM")):
            serial = int(line[6:11])
            nxt = body[k + 1] if k + 1 < len(body) else ""
            if not nxt.startswith(("ATOM  ", "HETATM")) or nxt[21] != line[21]:
                out.append(f"TER   {serial + 1:>5}      {line[17:20]} {line[21]}{line[22:27]}".rstrip())
    return out


def _add_cif_metadata(cif_file, atoms, structure: Structure, block: str, binary: bool) -> None:
    """The categories of :mod:`simplefold.io.cif_metadata` plus consistent atom_site label columns."""
    from biotite.structure.io import pdbx

    from simplefold import __version__

    import biotite.structure as struc

    chain_ids = _output_chain_ids(structure)
    blk = cif_file.block
    stacked = isinstance(atoms, struc.AtomArrayStack)
    entity_id, seq_id = cif_metadata.label_columns(atoms[0] if stacked else atoms, structure, chain_ids)
    n_models = atoms.stack_depth() if stacked else 1
    site = blk["atom_site"]
    cat_cls = pdbx.BinaryCIFCategory if binary else pdbx.CIFCategory
    cols = {name: site[name] for name in site.keys()}  # column objects: keep their masks ('.' / '?')
    cols["label_entity_id"] = np.tile(entity_id, n_models)
    cols["label_seq_id"] = np.tile(seq_id, n_models)
    ordered = {}
    for name, values in cif_metadata.categories(structure, chain_ids, block, __version__).items():
        ordered[name] = cat_cls({k: np.asarray(v) for k, v in values.items()})
    ordered["atom_site"] = cat_cls(cols)
    for name in list(blk.keys()):
        del blk[name]
    for name, cat in ordered.items():
        blk[name] = cat


def _serialize(structures: list[Structure], fmt: str) -> bytes:
    import biotite.structure as struc
    from biotite.structure.io import pdb as biotite_pdb
    from biotite.structure.io import pdbx

    arrays = [_to_atom_array(s) for s in structures]
    for k, a in enumerate(arrays[1:], 2):
        if not _same_atoms(arrays[0], a):
            raise ValueError(
                f"model {k} ({structures[k - 1].name}) has different atoms than model 1; "
                "an ensemble needs identical atom sets"
            )
    if arrays[0].array_length() == 0:
        raise ValueError(f"{structures[0].name}: no present atoms to write")
    atoms = arrays[0] if len(arrays) == 1 else struc.stack(arrays)
    if fmt == "pdb":
        if arrays[0].array_length() > 99_999:
            raise ValueError(f"{structures[0].name}: {arrays[0].array_length()} atoms do not fit a PDB file; use .cif")
        long_ids = sorted({c for c in arrays[0].chain_id if len(c) > 1})
        if long_ids:
            raise ValueError(f"{structures[0].name}: chain IDs {long_ids} are longer than PDB allows; use .cif")
        pdb_file = biotite_pdb.PDBFile()
        pdb_file.set_structure(atoms)
        body = _with_ter([line for line in pdb_file.lines if line.strip()])
        text = "\n".join(_pdb_header(structures[0], len(structures)) + body)
        if not body or body[-1].strip() != "END":
            text += "\nEND"
        return (text + "\n").encode()
    block = _cif_block_name(structures[0].name)
    if fmt == "cif":
        cif_file = pdbx.CIFFile()
        pdbx.set_structure(cif_file, atoms, data_block=block)
        _add_cif_metadata(cif_file, atoms, structures[0], block, binary=False)
        buf = io.StringIO()
        cif_file.write(buf)
        return buf.getvalue().encode()
    bcif_file = pdbx.BinaryCIFFile()
    pdbx.set_structure(bcif_file, atoms, data_block=block)
    _add_cif_metadata(bcif_file, atoms, structures[0], block, binary=True)
    buf = io.BytesIO()
    bcif_file.write(buf)
    return buf.getvalue()


def _cif_block_name(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "_-." else "_" for c in name)
    return cleaned or "structure"


#: Largest |coordinate| the PDB format's 8.3f columns hold.
_PDB_MAX_COORD = 9999.999


def _check_writable_coords(path: pathlib.Path, structure: Structure, fmt: str) -> None:
    """StructureError naming the problem when present atoms have non-finite or (PDB) too large coordinates."""
    xyz = np.asarray(structure.coords, np.float64)[np.asarray(structure.atom_mask, bool)]
    bad = ~np.isfinite(xyz).all(-1)
    if bad.any():
        raise StructureError(f"{path}: {structure.name}: {int(bad.sum())} atoms have non-finite coordinates; not written")
    if fmt == "pdb" and len(xyz) and np.abs(xyz).max() > _PDB_MAX_COORD:
        raise StructureError(
            f"{path}: {structure.name}: coordinates reach {np.abs(xyz).max():.4g} Å, beyond the PDB format's "
            f"±{_PDB_MAX_COORD} Å; not written"
        )


def write_structure(path, structures: Structure | Sequence[Structure], *, format: str | None = None) -> None:
    """Write one structure, or several with identical atoms as a multi-model ensemble.

    Only present atoms (``atom_mask``) are written, with their occupancy and B-factor (pLDDT for
    predictions), elements always set, and an ``OXT`` on each chain's C-terminus placed from CA, C
    and O when those are present. PDB output starts with ``HEADER`` and ``CRYST1`` records. The
    file is written atomically (:func:`simplefold.utils.files.atomic_write_bytes`).

    Args:
      path: output path; ``.pdb``, ``.cif``/``.mmcif`` or ``.bcif``, optionally ``.gz``.
      structures: a :class:`Structure` or a sequence of them (models of one ensemble).
      format: ``"pdb"``, ``"cif"``/``"mmcif"`` or ``"bcif"``; taken from the extension if None.

    Raises:
      StructureError: unknown format, non-finite coordinates (or beyond ±9999.999 Å for PDB), or the
        file cannot be written.
      ValueError: the structures cannot be written together (different atoms) or do not fit PDB.
    """
    path = pathlib.Path(path)
    models = [structures] if isinstance(structures, Structure) else list(structures)
    if not models:
        raise ValueError(f"{path}: no structure to write")
    fmt = {"mmcif": "cif"}.get(format.lower(), format.lower()) if format else _format_from_name(path)
    if fmt not in ("pdb", "cif", "bcif"):
        raise StructureError(f"{path}: unknown structure format {format or path.suffix!r} (use .pdb, .cif or .bcif)")
    for m in models:
        _check_writable_coords(path, m, fmt)
    data = _serialize(models, fmt)
    if path.name.lower().endswith(".gz"):
        data = gzip.compress(data, mtime=0)
    try:
        atomic_write_bytes(path, data)
    except OSError as e:
        raise StructureError(f"{path}: cannot write ({_one_line(e)})") from None
