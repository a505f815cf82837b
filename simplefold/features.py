"""The feature dict: one documented schema, the featurizer, padding to length buckets.

Every array that crosses a module boundary (featurizer -> model, sampler, losses, loader) is a flat
``dict[str, np.ndarray]`` whose names, dtypes and symbolic shapes are given by :data:`FEATURE_SCHEMA`.
Names, dtypes and layout are the official SimpleFold ones (the Boltz featurizer it uses,
``src/simplefold/boltz_data_pipeline/feature/featurizer.py`` of apple/ml-simplefold), so a
feature dict made here can be fed to the official network and vice versa.

Shapes are written without the batch axis; a *batched* dict has a leading ``B`` on every array.
Symbols: ``N`` atom slots, ``M`` residue tokens, ``E`` ESM layers, ``C`` ESM channels.

Padding has two levels:

* the **official** padding of atoms up to a multiple of 32 (:data:`simplefold.constants.ATOM_WINDOW`). Those slots have
  ``atom_pad_mask = 0`` but the official network *attends* to them, so they are part of the model's
  input and are kept for exact parity (``atom_slot_mask = 1``);
* **bucket** padding added by :func:`pad_to_bucket` so that one compiled function serves many
  proteins. Those slots have ``atom_slot_mask = 0`` / ``token_pad_mask = 0`` and are masked out of
  every attention and pooling, so outputs on real atoms do not change.

Coordinates: ``coords`` are in model units (Å / :data:`simplefold.constants.COORD_SCALE`), ``ref_pos``
in Å / :data:`simplefold.constants.REF_POS_SCALE`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from simplefold import residues
from simplefold.constants import (
    ATOM_WINDOW,
    COORD_SCALE,
    DISTO_MAX,
    DISTO_MIN,
    NUM_ATOM_NAME_CHARS,
    NUM_CHAR_CLASSES,
    NUM_DISTO_BINS,
    NUM_ELEMENT_CLASSES,
    NUM_POCKET_CLASSES,
    NUM_RES_TYPES,
    REF_POS_SCALE,
)

if TYPE_CHECKING:
    from simplefold.io.structure import Chain

#: Default residue-count buckets (padded ``M``); longer proteins round up to a multiple of 256.
TOKEN_BUCKETS = (32, 48, 64, 96, 128, 160, 192, 256, 320, 384, 448, 512, 640, 768, 1024)


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
    """Schema entry: dtype, symbolic shape (without batch), value used for padding, who reads it."""

    dtype: str
    shape: tuple[str | int, ...]
    pad_value: float | int | bool = 0
    doc: str = ""
    network: bool = False  # read by FoldingDiT.forward
    official: bool = True  # produced by the official pipeline


_F = FeatureSpec
FEATURE_SCHEMA: dict[str, FeatureSpec] = {
    # --- atom level -------------------------------------------------------------------
    "ref_pos": _F("float32", ("N", 3), 0.0, "reference conformer xyz, Å/5", network=True),
    "ref_element": _F("int64", ("N", NUM_ELEMENT_CLASSES), 0, "one-hot atomic number", network=True),
    "ref_charge": _F("int8", ("N",), 0, "formal charge", network=True),
    "ref_atom_name_chars": _F("int64", ("N", NUM_ATOM_NAME_CHARS, NUM_CHAR_CLASSES), 0, "one-hot (ord(c)-32)%64 per char",
                              network=True),
    "ref_space_uid": _F("int64", ("N",), 0, "residue ordinal of each atom", network=True),
    "atom_pad_mask": _F("float32", ("N",), 0.0, "1 real atom, 0 padding", network=True),
    "atom_resolved_mask": _F("bool", ("N",), False, "atom present in the experiment"),
    "atom_to_token": _F("int64", ("N", "M"), 0, "one-hot residue of each atom", network=True),
    "atom_to_token_idx": _F("int64", ("N",), 0, "residue index of each atom (padding 0)", network=True),
    "coords": _F("float32", ("N", 3), 0.0, "ground truth, Å/16 (zeros at inference)"),
    "is_backbone": _F("bool", ("N",), False, "N, CA, C, O"),
    "mol_index": _F("int64", ("N",), 0, "atom slot index"),
    "atom_slot_mask": _F("float32", ("N",), 0.0, "1 official slot (real + pad-to-32), 0 bucket padding",
                         official=False),
    # --- token level ------------------------------------------------------------------
    "token_index": _F("int64", ("M",), 0, "token ordinal"),
    "residue_index": _F("int64", ("M",), 0, "0-based residue position", network=True),
    "asym_id": _F("int64", ("M",), 0, "chain instance id", network=True),
    "entity_id": _F("int64", ("M",), 0, "entity id", network=True),
    "sym_id": _F("int64", ("M",), 0, "symmetry copy id", network=True),
    "mol_type": _F("int64", ("M",), 0, "0 = protein", network=True),
    "res_type": _F("int64", ("M", NUM_RES_TYPES), 0, "one-hot official res_type", network=True),
    "pocket_feature": _F("int64", ("M", NUM_POCKET_CLASSES), 0, "one-hot, always class 0", network=True),
    "disto_center": _F("float32", ("M", 3), 0.0, "ground-truth disto atom (CB / CA for GLY), Å/16"),
    "token_pad_mask": _F("float32", ("M",), 0.0, "1 real token, 0 bucket padding"),
    "token_resolved_mask": _F("float32", ("M",), 0.0, "center atom (CA) resolved"),
    "token_disto_mask": _F("float32", ("M",), 0.0, "disto atom resolved"),
    "token_to_rep_atom": _F("int64", ("M", "N"), 0, "one-hot disto atom of each token"),
    "r_set_to_rep_atom": _F("int64", ("M", "N"), 0, "one-hot center atom (CA) of each token"),
    "disto_target": _F("int64", ("M", "M", NUM_DISTO_BINS), 0, "one-hot binned disto-atom distance"),
    # --- per example ------------------------------------------------------------------
    "num_repeats": _F("int64", (), 1, "multiplicity bookkeeping"),
    "max_num_tokens": _F("int64", (), 0, "uncropped length L (length conditioning)", network=True),
    "cropped_num_tokens": _F("int64", (), 0, "length after cropping"),
    "esm_s": _F("float32", ("M", "E", "C"), 0.0, "ESM representations of every layer", network=True),
}

#: Features big enough that they are produced only on request (unused by the network).
OPTIONAL_FEATURES = frozenset({"disto_target", "esm_s"})


def _one_hot(idx: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros(idx.shape + (n,), dtype=np.int64)
    np.put_along_axis(out, idx[..., None].astype(np.int64), 1, axis=-1)
    return out


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


@dataclasses.dataclass(frozen=True)
class _Layout:
    """Flat heavy-atom layout of one chain (official order)."""

    res_types: np.ndarray  # (M,) int
    atom_names: tuple[str, ...]  # (A,)
    atom_residue: np.ndarray  # (A,) int
    ref_pos: np.ndarray  # (A, 3) Å
    atomic_numbers: np.ndarray  # (A,)
    charges: np.ndarray  # (A,)


def _layout_from_res_names(res_names: Sequence[str]) -> _Layout:
    templates = residues.residue_templates()
    names, owner, pos, z, q = [], [], [], [], []
    res_types = np.empty(len(res_names), dtype=np.int64)
    for i, rn in enumerate(res_names):
        tpl = templates.get(rn, templates["UNK"])
        res_types[i] = residues.RES_TYPE_INDEX.get(rn, residues.UNK_RES_TYPE)
        names.extend(tpl.atom_names)
        owner.extend([i] * tpl.num_atoms)
        pos.append(tpl.ref_pos)
        z.append(tpl.atomic_numbers)
        q.append(tpl.charges)
    return _Layout(
        res_types=res_types,
        atom_names=tuple(names),
        atom_residue=np.asarray(owner, dtype=np.int64),
        ref_pos=np.concatenate(pos).astype(np.float32) if pos else np.zeros((0, 3), np.float32),
        atomic_numbers=np.concatenate(z) if z else np.zeros(0, np.int64),
        charges=np.concatenate(q) if q else np.zeros(0, np.int64),
    )


def sequence_to_res_names(sequence: str) -> list[str]:
    """One-letter sequence -> 3-letter names exactly as the official parser maps them (unknown -> UNK)."""
    return [residues.LETTER_TO_RES_NAME.get(c, "UNK") if c != "-" else "UNK" for c in sequence.upper()]


def _featurize_layout(
    layout: _Layout,
    coords: np.ndarray | None,
    atom_mask: np.ndarray | None,
    *,
    max_num_tokens: int | None,
    entity_id: int,
    include_disto_target: bool,
) -> dict[str, np.ndarray]:
    m = len(layout.res_types)
    a = len(layout.atom_names)
    if m == 0:
        raise ValueError("cannot featurize an empty chain")
    n = _round_up(a, ATOM_WINDOW)

    def pad_atoms(x: np.ndarray, value=0) -> np.ndarray:
        out = np.full((n,) + x.shape[1:], value, dtype=x.dtype)
        out[:a] = x
        return out

    resolved = np.ones(a, dtype=bool) if atom_mask is None else np.asarray(atom_mask, dtype=bool)
    xyz = np.zeros((a, 3), np.float32) if coords is None else np.asarray(coords, np.float32)
    xyz = np.where(resolved[:, None], xyz, 0.0).astype(np.float32)

    is_backbone = np.isin(np.asarray(layout.atom_names), ("N", "CA", "C", "O"))
    name_codes = np.stack([residues.encode_atom_name(nm) for nm in layout.atom_names])
    res_start = np.searchsorted(layout.atom_residue, np.arange(m))

    # Center atom CA is slot 1 of every amino-acid template; disto atom is CB (slot 4), CA for GLY.
    center_atom = res_start + 1
    has_cb = np.array([nm == "CB" for nm in np.asarray(layout.atom_names)[np.minimum(res_start + 4, a - 1)]])
    has_cb &= (res_start + 4) < np.append(res_start[1:], a)
    disto_atom = np.where(has_cb, res_start + 4, center_atom)

    feats: dict[str, np.ndarray] = {
        "ref_pos": pad_atoms(layout.ref_pos / np.float32(REF_POS_SCALE)).astype(np.float32),
        "ref_element": pad_atoms(_one_hot(layout.atomic_numbers, NUM_ELEMENT_CLASSES)),
        "ref_charge": pad_atoms(layout.charges.astype(np.int8)),
        "ref_atom_name_chars": pad_atoms(_one_hot(name_codes, NUM_CHAR_CLASSES)),
        "ref_space_uid": pad_atoms(layout.atom_residue.astype(np.int64)),
        "atom_pad_mask": pad_atoms(np.ones(a, np.float32)),
        "atom_resolved_mask": pad_atoms(resolved, False),
        "atom_to_token": pad_atoms(_one_hot(layout.atom_residue, m)),
        "atom_to_token_idx": pad_atoms(layout.atom_residue.astype(np.int64)),
        "coords": pad_atoms(xyz / np.float32(COORD_SCALE)).astype(np.float32),
        "is_backbone": pad_atoms(is_backbone, False),
        "mol_index": np.arange(n, dtype=np.int64),
        "atom_slot_mask": np.ones(n, np.float32),
        "token_index": np.arange(m, dtype=np.int64),
        "residue_index": np.arange(m, dtype=np.int64),
        "asym_id": np.zeros(m, np.int64),
        "entity_id": np.full(m, entity_id, np.int64),
        "sym_id": np.zeros(m, np.int64),
        "mol_type": np.zeros(m, np.int64),
        "res_type": _one_hot(layout.res_types, NUM_RES_TYPES),
        "pocket_feature": _one_hot(np.zeros(m, np.int64), NUM_POCKET_CLASSES),
        "disto_center": (xyz[disto_atom] / np.float32(COORD_SCALE)).astype(np.float32),
        "token_pad_mask": np.ones(m, np.float32),
        "token_resolved_mask": resolved[center_atom].astype(np.float32),
        "token_disto_mask": resolved[disto_atom].astype(np.float32),
        "token_to_rep_atom": _one_hot(disto_atom, n),
        "r_set_to_rep_atom": _one_hot(center_atom, n),
        "num_repeats": np.array(1, np.int64),
        "max_num_tokens": np.array(m if max_num_tokens is None else max_num_tokens, np.int64),
        "cropped_num_tokens": np.array(m, np.int64),
    }
    if include_disto_target:
        centers = xyz[disto_atom]
        dist = np.linalg.norm(centers[:, None] - centers[None, :], axis=-1)
        boundaries = np.linspace(DISTO_MIN, DISTO_MAX, NUM_DISTO_BINS - 1)
        feats["disto_target"] = _one_hot((dist[..., None] > boundaries).sum(-1), NUM_DISTO_BINS)
    return feats


def featurize_sequence(
    sequence: str,
    *,
    esm_s: np.ndarray | None = None,
    entity_id: int = 0,
    include_disto_target: bool = False,
) -> dict[str, np.ndarray]:
    """Single-chain sequence -> the official inference feature dict (no batch axis).

    Args:
      sequence: one-letter amino acids; X/B/Z/J/O/U (and anything unknown) become UNK as in the
        official parser.
      esm_s: optional (M, E, C) float32 ESM representations, stored under ``esm_s``.
      entity_id: the official code gives the surviving chain of a multi-record FASTA a non-zero
        entity id; 0 for a single sequence.
      include_disto_target: also build the (M, M, 64) ``disto_target`` (unused by the network).

    Returns:
      dict following :data:`FEATURE_SCHEMA` with N = ceil(A/32)*32 atom slots, M = len(sequence);
      ``coords`` are zeros (only their shape is used by the sampler).
    """
    layout = _layout_from_res_names(sequence_to_res_names(sequence))
    feats = _featurize_layout(
        layout, None, None, max_num_tokens=None, entity_id=entity_id, include_disto_target=include_disto_target
    )
    if esm_s is not None:
        feats["esm_s"] = _check_esm(esm_s, len(sequence))
    return feats


def featurize_chain(
    chain: Chain,
    *,
    esm_s: np.ndarray | None = None,
    max_num_tokens: int | None = None,
    include_disto_target: bool = False,
) -> dict[str, np.ndarray]:
    """Experimental chain -> features plus ground truth (no batch axis).

    ``coords`` holds the experimental heavy atoms in model units (Å/16), centred on the mean of the
    resolved atoms; ``atom_resolved_mask`` is False for atoms absent from the file (their
    coordinates are zero, never invented). Token masks follow the resolved state of CA / CB.
    """
    layout = _layout_from_res_names(chain.res_names)
    if layout.atom_names != tuple(chain.atom_names):
        raise ValueError(f"chain {chain.chain_id!r}: atom layout differs from the residue templates")
    mask = np.asarray(chain.atom_mask, bool)
    xyz = np.asarray(chain.coords, np.float32)
    if mask.any():
        xyz = xyz - xyz[mask].mean(0, dtype=np.float64).astype(np.float32)
    feats = _featurize_layout(
        layout, xyz, mask, max_num_tokens=max_num_tokens, entity_id=0, include_disto_target=include_disto_target
    )
    if esm_s is not None:
        feats["esm_s"] = _check_esm(esm_s, chain.num_residues)
    return feats


def _check_esm(esm_s: np.ndarray, m: int) -> np.ndarray:
    esm_s = np.asarray(esm_s, np.float32)
    if esm_s.ndim != 3 or esm_s.shape[0] != m:
        raise ValueError(f"esm_s must have shape (M={m}, layers, dim), got {esm_s.shape}")
    return esm_s


# --------------------------------------------------------------------------------------
# Slicing (crops), padding to buckets, batching, validation
# --------------------------------------------------------------------------------------


def _axes_of(name: str, symbol: str) -> list[int]:
    return [i for i, s in enumerate(FEATURE_SCHEMA[name].shape) if s == symbol]


def num_tokens(feats: Mapping[str, np.ndarray]) -> int:
    return int(feats["residue_index"].shape[-1])


def num_atoms(feats: Mapping[str, np.ndarray]) -> int:
    return int(feats["atom_pad_mask"].shape[-1])


def bucket_size(n: int, buckets: Sequence[int] = TOKEN_BUCKETS) -> int:
    """Smallest bucket >= n; beyond the largest bucket, round up to a multiple of 256."""
    for b in buckets:
        if n <= b:
            return int(b)
    return _round_up(n, 256)


def atom_bucket_size(n_atoms: int, n_tokens_bucket: int) -> int:
    """Atom-slot bucket for a residue bucket: 8 slots per residue (protein average is ~7.8), but at
    least ``n_atoms`` rounded up to a multiple of 128 so one bucket serves most sequences."""
    return max(_round_up(n_tokens_bucket * 8, ATOM_WINDOW), _round_up(n_atoms, 128))


def pad_to_bucket(
    feats: Mapping[str, np.ndarray], num_tokens_to: int, num_atoms_to: int, *, batched: bool = False
) -> dict[str, np.ndarray]:
    """Pad every ``N`` axis to ``num_atoms_to`` and every ``M`` axis to ``num_tokens_to``.

    Padded slots get the schema's pad value, so ``atom_slot_mask``/``token_pad_mask`` are 0 there and
    the model masks them; outputs on real atoms and tokens are unchanged.
    """
    off = 1 if batched else 0
    out = {}
    for name, x in feats.items():
        spec = FEATURE_SCHEMA.get(name)
        if spec is None:
            out[name] = x
            continue
        widths = [(0, 0)] * np.ndim(x)
        for i, sym in enumerate(spec.shape):
            target = {"N": num_atoms_to, "M": num_tokens_to}.get(sym)  # type: ignore[call-overload]
            if target is None:
                continue
            cur = x.shape[i + off]
            if cur > target:
                raise ValueError(f"{name}: axis {sym} has {cur} > bucket {target}")
            widths[i + off] = (0, target - cur)
        out[name] = np.pad(x, widths, constant_values=spec.pad_value) if any(w[1] for w in widths) else x
    if "mol_index" in out:  # keeps its arange meaning over the padded slots
        base = np.arange(out["mol_index"].shape[-1], dtype=np.int64)
        out["mol_index"] = np.broadcast_to(base, out["mol_index"].shape).copy()
    return out


def crop(feats: Mapping[str, np.ndarray], token_idx: np.ndarray) -> dict[str, np.ndarray]:
    """Keep the tokens ``token_idx`` (sorted, unbatched features) and their atoms.

    Atoms are re-packed in order and re-padded to a multiple of 32; ``max_num_tokens`` keeps the
    uncropped length (official length conditioning), ``cropped_num_tokens`` becomes the crop size.
    ``token_index``/``residue_index`` keep their original values (RoPE sees true positions).
    """
    token_idx = np.asarray(sorted(token_idx), dtype=np.int64)
    m_new = len(token_idx)
    n_real = int(feats["atom_pad_mask"].sum())
    owner = feats["atom_to_token_idx"][:n_real]
    keep_atoms = np.flatnonzero(np.isin(owner, token_idx))
    a_new = len(keep_atoms)
    n_new = _round_up(a_new, ATOM_WINDOW)
    remap_tok = -np.ones(num_tokens(feats), np.int64)
    remap_tok[token_idx] = np.arange(m_new)
    remap_atom = -np.ones(num_atoms(feats), np.int64)
    remap_atom[keep_atoms] = np.arange(a_new)
    out: dict[str, np.ndarray] = {}
    for name, x in feats.items():
        spec = FEATURE_SCHEMA.get(name)
        if spec is None:
            out[name] = x
            continue
        y = x
        for i, sym in enumerate(spec.shape):
            if sym == "M":
                y = np.take(y, token_idx, axis=i)
            elif sym == "N":
                taken = np.take(y, keep_atoms, axis=i)
                widths = [(0, 0)] * y.ndim
                widths[i] = (0, n_new - a_new)
                y = np.pad(taken, widths, constant_values=spec.pad_value)
        out[name] = y
    # Index-valued features must be renumbered into the cropped frame.
    out["atom_to_token_idx"][:a_new] = remap_tok[out["atom_to_token_idx"][:a_new]]
    out["ref_space_uid"][:a_new] = out["atom_to_token_idx"][:a_new]
    out["mol_index"] = np.arange(n_new, dtype=np.int64)
    out["cropped_num_tokens"] = np.array(m_new, np.int64)
    for name in ("token_to_rep_atom", "r_set_to_rep_atom"):
        if name in out:
            src = np.argmax(feats[name][token_idx], -1)
            out[name] = _one_hot(np.maximum(remap_atom[src], 0), n_new)
    return out


def add_batch_axis(feats: Mapping[str, np.ndarray], batch: int = 1) -> dict[str, np.ndarray]:
    """Official layout has a leading batch axis; ``batch`` copies share memory (broadcast view)."""
    return {k: np.broadcast_to(np.asarray(v)[None], (batch,) + np.shape(v)) for k, v in feats.items()}


def stack(examples: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Stack equally padded unbatched examples into a batch."""
    keys = examples[0].keys()
    return {k: np.stack([e[k] for e in examples]) for k in keys}


def validate(feats: Mapping[str, np.ndarray], *, batched: bool = False, require_network: bool = True) -> None:
    """Check names, dtypes and symbolic shapes against :data:`FEATURE_SCHEMA`; raise ValueError naming the key."""
    sizes: dict[str, int] = {}
    off = 1 if batched else 0
    if require_network:
        missing = [k for k, s in FEATURE_SCHEMA.items() if s.network and k not in feats]
        if missing:
            raise ValueError(f"missing features: {', '.join(sorted(missing))}")
    for name, x in feats.items():
        spec = FEATURE_SCHEMA.get(name)
        if spec is None:
            continue
        x = np.asarray(x)
        if x.dtype != np.dtype(spec.dtype):
            raise ValueError(f"feature {name!r}: dtype {x.dtype}, expected {spec.dtype}")
        if x.ndim != len(spec.shape) + off:
            raise ValueError(f"feature {name!r}: rank {x.ndim}, expected {len(spec.shape) + off}")
        dims = ("B",) * off + spec.shape
        for sym, d in zip(dims, x.shape):
            if isinstance(sym, int):
                if d != sym:
                    raise ValueError(f"feature {name!r}: shape {x.shape}, expected {dims}")
            elif sizes.setdefault(sym, d) != d:
                raise ValueError(f"feature {name!r}: axis {sym} is {d}, other features have {sizes[sym]}")
