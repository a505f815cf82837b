"""Training/validation data pipeline (grain): records -> crops -> features -> padded batches.

Determinism and resumption: the k-th example read by host ``h`` is the global example
``g = (k // B_host) * B_global + h * B_host + k % B_host``; example ``g`` is record
``perm(epoch)[g % n]`` with ``epoch = g // n`` and a permutation seeded by ``(shuffle_seed, epoch)``,
and its crop and rotation come from a NumPy generator seeded by ``(shuffle_seed, g)``. The stream
therefore depends on nothing but the seed and the position, so

* the iterator state is just grain's position (``get_state`` / ``set_state``), saved in checkpoints;
* a run on 1 host and a run on several hosts see the same global batches.

Per example (official recipe: ``configs/data/pdb.yaml``,
``src/simplefold/boltz_data_pipeline/crop/boltz.py``): Boltz neighbourhood crop to ``max_tokens`` residues /
``max_atoms`` atoms (length conditioning keeps the uncropped length), features built by
:func:`simplefold.features.featurize_chain`, ground truth centred on resolved atoms, randomly
rotated and shifted by N(0, 1 Å). Multiplicity copies, t and noise are drawn in the train step.
A batch is padded to the length bucket of its longest example (:func:`features.bucket_size`).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import pathlib
import threading
from collections.abc import Mapping, Sequence

import numpy as np

from simplefold import features as F
from simplefold import residues
from simplefold.training import cropping
from simplefold.training.config import DataSection
from simplefold.io.dataset import ChainRecord, load_chain, load_records

logger = logging.getLogger(__name__)

#: Features the network reads (besides esm_s), in compact host dtypes (one-hots as uint8).
_NETWORK_DTYPES = {
    "ref_pos": np.float32,
    "ref_element": np.uint8,
    "ref_charge": np.int8,
    "ref_atom_name_chars": np.uint8,
    "ref_space_uid": np.int32,
    "atom_pad_mask": np.float32,
    "atom_to_token_idx": np.int32,
    "mol_type": np.int32,
    "res_type": np.uint8,
    "pocket_feature": np.uint8,
    "residue_index": np.int32,
    "entity_id": np.int32,
    "asym_id": np.int32,
    "sym_id": np.int32,
    "max_num_tokens": np.int32,
    "atom_slot_mask": np.float32,
    "token_pad_mask": np.float32,
}
#: Ground truth used by the loss.
_TARGET_DTYPES = {"coords": np.float32, "atom_resolved_mask": np.float32}


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    """Uniform SO(3) rotation from a normalised Gaussian quaternion (3, 3) float64."""
    q = rng.standard_normal(4)
    r, i, j, k = q / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (j * j + k * k), 2 * (i * j - k * r), 2 * (i * k + j * r)],
            [2 * (i * j + k * r), 1 - 2 * (i * i + k * k), 2 * (j * k - i * r)],
            [2 * (i * k - j * r), 2 * (j * k + i * r), 1 - 2 * (i * i + j * j)],
        ]
    )


@functools.cache
def _atoms_per_res_type() -> dict[str, int]:
    return {name: t.num_atoms for name, t in residues.residue_templates().items()}


def compact_features(feats: Mapping[str, np.ndarray], *, condition: str = "embedding") -> dict[str, np.ndarray]:
    """Keep what training needs (network inputs + ground truth) in compact dtypes.

    The (N, M) one-hot ``atom_to_token`` is dropped: the network only needs its row sums, which
    equal ``atom_pad_mask`` for amino-acid chains.
    """
    out = {k: np.asarray(feats[k]).astype(dt, copy=False) for k, dt in _NETWORK_DTYPES.items()}
    out.update({k: np.asarray(feats[k]).astype(dt, copy=False) for k, dt in _TARGET_DTYPES.items()})
    if condition == "esm":
        if "esm_s" not in feats:
            raise KeyError("ESM-conditioned training needs 'esm_s' in the features")
        out["esm_s"] = np.asarray(feats["esm_s"], np.float32)
    return out


_ESM_LOCK = threading.Lock()


@functools.lru_cache(maxsize=2)
def _load_esm(spec: str):
    from simplefold.weights import cache, esm

    path = pathlib.Path(spec).expanduser()
    if path.exists():
        return esm.load_official_esm2(path)  # a .pt file or a converted directory
    return esm.load_converted_esm2(cache.resolve(spec))


def load_esm_encoder(spec: str):
    """The ESM2 encoder named by ``data.esm_model`` (loaded once per process, thread-safe)."""
    with _ESM_LOCK:
        return _load_esm(str(spec))


def esm_representations(esm_model: str, sequence: str, cache: bool = False) -> np.ndarray:
    """``esm_s`` ``(M, E, C)`` float32 of one sequence (official: computed on the cropped sequence)."""
    from simplefold import esm

    return esm.esm_features(load_esm_encoder(esm_model), [sequence], cache=cache or None)[0]


def check_condition(condition: str, data: DataSection) -> None:
    """Raise ValueError when an ESM-conditioned model is trained without ``data.esm_model``."""
    if condition == "esm" and not data.esm_model:
        raise ValueError(
            "condition='esm' training needs data.esm_model=<ESM2 .pt file, converted directory or released "
            "name> (or train a model with condition='embedding')"
        )


@dataclasses.dataclass(frozen=True)
class ExampleBuilder:
    """Picklable ``global example index -> unpadded compact feature dict`` (training examples)."""

    data_dir: str
    records: tuple[ChainRecord, ...]
    data: DataSection
    condition: str = "embedding"

    def _permutation(self, epoch: int) -> np.ndarray:
        return _epoch_permutation(len(self.records), self.data.shuffle_seed, epoch)

    def record_for(self, g: int) -> ChainRecord:
        n = len(self.records)
        return self.records[int(self._permutation(g // n)[g % n])]

    def __call__(self, g: int) -> dict[str, np.ndarray]:
        record = self.record_for(g)
        rng = np.random.default_rng([self.data.shuffle_seed, 1, int(g)])
        return build_example(self.data_dir, record, self.data, rng, condition=self.condition, augment=self.data.augment)


@functools.lru_cache(maxsize=4)
def _epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, 0, epoch]).permutation(n)


def crop_chain(chain, data: DataSection, rng: np.random.Generator) -> np.ndarray:
    """Residue indices of one Boltz neighbourhood crop of ``chain`` (all residues if it fits)."""
    ca, ca_mask = chain.atom_coords("CA")
    per_res = _atoms_per_res_type()
    atoms = np.array([per_res.get(r, per_res["UNK"]) for r in chain.res_names])
    sizes = cropping.neighborhood_sizes(data.min_neighborhood, data.max_neighborhood)
    nbh = int(sizes[rng.integers(len(sizes))])
    return cropping.neighborhood_crop(
        ca, ca_mask, atoms, max_tokens=data.max_tokens, max_atoms=data.max_atoms, neighborhood_size=nbh, rng=rng
    )


def subchain(chain, residue_idx: np.ndarray):
    """The chain restricted to the residues ``residue_idx`` (sorted)."""
    from simplefold.io.structure import Chain

    residue_idx = np.asarray(residue_idx, np.int64)
    starts = chain.residue_starts
    atom_idx = np.concatenate([np.arange(starts[i], starts[i + 1]) for i in residue_idx])
    remap = np.full(chain.num_residues, -1, np.int64)
    remap[residue_idx] = np.arange(len(residue_idx))
    return Chain(
        chain_id=chain.chain_id,
        res_names=tuple(chain.res_names[i] for i in residue_idx),
        res_ids=chain.res_ids[residue_idx],
        ins_codes=tuple(chain.ins_codes[i] for i in residue_idx),
        atom_names=tuple(chain.atom_names[i] for i in atom_idx),
        elements=tuple(chain.elements[i] for i in atom_idx),
        atom_residue=remap[chain.atom_residue[atom_idx]],
        coords=chain.coords[atom_idx],
        atom_mask=chain.atom_mask[atom_idx],
        occupancy=chain.occupancy[atom_idx],
        b_factors=chain.b_factors[atom_idx],
    )


def featurize_crop(chain, residue_idx: np.ndarray, *, esm_model: str | None = None,
                   esm_cache: bool = False) -> dict[str, np.ndarray]:
    """Features of the residues ``residue_idx`` of ``chain`` (equal to featurising the whole chain and
    :func:`features.crop`-ping it, except that ``coords`` are centred on the crop's resolved atoms).

    ``token_index``/``residue_index`` keep the original positions; ``max_num_tokens`` is the full length.
    With ``esm_model``, ``esm_s`` (M_crop, E, C) is computed on the cropped sequence.
    """
    sub = subchain(chain, residue_idx)
    esm_s = esm_representations(esm_model, sub.sequence, esm_cache) if esm_model else None
    feats = F.featurize_chain(sub, max_num_tokens=chain.num_residues, esm_s=esm_s)
    feats["token_index"] = np.asarray(residue_idx, np.int64)
    feats["residue_index"] = np.asarray(residue_idx, np.int64)
    return feats


def build_example(
    data_dir: str | pathlib.Path,
    record: ChainRecord,
    data: DataSection,
    rng: np.random.Generator,
    *,
    condition: str = "embedding",
    augment: bool = True,
) -> dict[str, np.ndarray]:
    """Crop, featurise and augment one training example (unpadded, compact dtypes)."""
    check_condition(condition, data)
    chain = load_chain(data_dir, record)
    residue_idx = crop_chain(chain, data, rng)
    esm_model = data.esm_model if condition == "esm" else None
    feats = featurize_crop(chain, residue_idx, esm_model=esm_model, esm_cache=data.esm_cache)
    if augment:
        rot = _random_rotation(rng)
        shift = rng.standard_normal(3) * data.augment_translation_angstrom / F.COORD_SCALE
        resolved = feats["atom_resolved_mask"]
        moved = (feats["coords"].astype(np.float64) @ rot + shift).astype(np.float32)
        feats["coords"] = np.where(resolved[:, None], moved, 0.0).astype(np.float32)
    return compact_features(feats, condition=condition)


def pad_batch(
    examples: Sequence[Mapping[str, np.ndarray]],
    max_tokens: int | None = None,
    max_atoms: int | None = None,
    pad_to_max: bool = False,
) -> dict[str, np.ndarray]:
    """Pad examples to the length bucket of the longest one and stack them (leading batch axis).

    Args:
      examples: unpadded compact feature dicts.
      max_tokens / max_atoms: the crop budget; caps the residue bucket.
      pad_to_max: pad to the budget itself (one shape for every batch).
    """
    m = max(int(e["residue_index"].shape[0]) for e in examples)
    n = max(int(e["atom_pad_mask"].shape[0]) for e in examples)
    if pad_to_max and max_tokens is not None and max_atoms is not None:
        mb = max(m, max_tokens)
        nb = max(n, -(-max_atoms // F.ATOM_WINDOW) * F.ATOM_WINDOW)
    else:
        mb = F.bucket_size(m)
        if max_tokens is not None:
            mb = max(m, min(mb, max_tokens))
        nb = F.atom_bucket_size(n, mb)
    padded = []
    for e in examples:
        padded.append(F.pad_to_bucket(e, mb, nb))
    return F.stack(padded)


def host_batch_indices(step: int, batch_per_host: int, process_index: int, process_count: int) -> np.ndarray:
    """Global example indices read by one host at one step."""
    base = step * batch_per_host * process_count + process_index * batch_per_host
    return np.arange(base, base + batch_per_host)


_MAX_EXAMPLES = 2**40  # the stream is conceptually infinite; grain needs a length


def make_train_iterator(
    data: DataSection,
    *,
    condition: str = "embedding",
    batch_per_host: int,
    process_index: int = 0,
    process_count: int = 1,
    records: Sequence[ChainRecord] | None = None,
):
    """Grain iterator over padded training batches for this host; supports ``get_state/set_state``.

    Args:
      data: data section of the run config.
      condition: ``"esm"`` adds ``esm_s`` of each crop (needs ``data.esm_model``); ``"embedding"`` does not.
      batch_per_host: proteins per batch on this host (= batch_per_device × local devices).
      process_index / process_count: this host and the number of hosts.
      records: override the records read from ``data.data_dir`` (tests).

    Raises:
      ValueError: no training records.
    """
    import grain

    check_condition(condition, data)
    if records is None:
        records = load_records(data.data_dir, data.train_split, min_length=data.min_length, max_length=data.max_length)
    if not records:
        raise ValueError(f"{data.data_dir}: no records in split {data.train_split!r}")
    builder = ExampleBuilder(str(data.data_dir), tuple(records), data, condition)

    def global_index(k: int) -> int:
        step, j = divmod(int(k), batch_per_host)
        return int(host_batch_indices(step, batch_per_host, process_index, process_count)[j])

    ds = grain.MapDataset.range(_MAX_EXAMPLES).map(global_index).map(builder)
    ds = ds.batch(batch_per_host, drop_remainder=True, batch_fn=functools.partial(
        pad_batch, max_tokens=data.max_tokens, max_atoms=data.max_atoms, pad_to_max=data.pad_to_max
    ))
    options = grain.ReadOptions(num_threads=max(1, data.read_threads), prefetch_buffer_size=max(1, data.prefetch))
    return ds.to_iter_dataset(options).__iter__()


# --------------------------------------------------------------------------------------
# Validation examples
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ValidationExample:
    """One dev chain prepared for sampling: batch-1 padded features plus the experimental chain."""

    record: ChainRecord
    feats: dict[str, np.ndarray]  # batch 1, padded; coords are the ground truth (model units)
    chain: object  # simplefold.io.structure.Chain, Å: the reference the samples are scored against
    num_atoms: int  # real atom slots (template heavy atoms) = rows of the sampled coordinates

    def reference(self):
        """The experimental chain as a :class:`simplefold.io.structure.Structure` named after the record."""
        from simplefold.io.structure import Structure

        return Structure(name=self.record.id, chains=(self.chain,))

    def prediction(self, coords: np.ndarray):
        """A sampled ``(num_atoms, 3)`` Å array as a Structure with every template atom present (as
        ``simplefold predict`` writes it; B-factors 0)."""
        ref = self.reference()
        return ref.with_coords(
            np.asarray(coords, np.float32), b_factors=np.zeros(ref.num_atoms, np.float32),
            atom_mask=np.ones(ref.num_atoms, bool), name=f"{self.record.id}_sample_0",
        )


def validation_examples(
    data_dir: str | pathlib.Path, split: str, *, num_proteins: int, max_tokens: int, seed: int, condition: str,
    esm_model: str | None = None, esm_cache: bool = False,
) -> list[ValidationExample]:
    """Up to ``num_proteins`` chains of ``split`` with at most ``max_tokens`` residues (seeded choice).

    ``condition="esm"`` needs ``esm_model`` (``esm_s`` of the whole chain)."""
    if condition == "esm" and not esm_model:
        raise ValueError("condition='esm' validation needs data.esm_model")
    records = [r for r in load_records(data_dir, split) if r.length <= max_tokens]
    if not records:
        return []
    order = np.random.default_rng(seed).permutation(len(records))[:num_proteins]
    out = []
    for i in sorted(order.tolist()):
        rec = records[i]
        chain = load_chain(data_dir, rec)
        esm_s = esm_representations(esm_model, chain.sequence, esm_cache) if condition == "esm" else None
        feats = F.featurize_chain(chain, esm_s=esm_s)
        n_real = int(feats["atom_pad_mask"].sum())
        if n_real != chain.num_atoms:
            raise ValueError(f"{rec.id}: {n_real} feature atoms but the chain has {chain.num_atoms}")
        padded = pad_batch([compact_features(feats, condition=condition)])
        out.append(ValidationExample(record=rec, feats=padded, chain=chain, num_atoms=n_real))
    return out
