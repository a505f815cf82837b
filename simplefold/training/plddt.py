"""Train a pLDDT head on a folding model's own samples (official ``configs/experiment/train_plddt.yaml``, scaled down).

Recipe:

1. **Samples.** For each training chain (a Boltz neighbourhood crop of at most ``max_tokens``
   residues, as in training), the frozen folding model draws ``num_samples`` structures from noise
   with the Euler–Maruyama sampler (τ = 0.3 as in the official pLDDT stage, few steps) and
   ``num_partial`` *partial* trajectories that start from the true structure noised to a time
   ``t0`` (``x = t0·x_true + (1 − t0)·ε``, randomly rotated) and integrate from ``t0`` to 1. A
   partly trained model mostly makes poor structures; the partial trajectories add good ones, so
   the head sees the whole lDDT range.
2. **Latent.** The frozen model is run once at t = 1 on the centred sample; its residue-trunk
   output ``latent`` (M, D) is the head's input (no gradient flows into the folding model: the
   latents are computed once and cached).
3. **Targets** (:func:`token_lddt_targets`): per token, the lDDT of its representative atom (CB,
   CA for GLY) against the CA atoms of all resolved tokens, pairs with true distance < 15 Å,
   score 0.25 × #{0.5, 1, 2, 4 Å thresholds that |d_pred − d_true| is under}; binned as
   ``min(floor(lddt · 50), 49)``.
4. **Head.** A :class:`~simplefold.model.plddt.PLDDTHead` of the trunk width (fewer blocks than
   the official 4) is trained with AdamW on the cross-entropy, averaged over tokens whose
   representative atom is resolved and that have at least one neighbour, then over examples.

Everything is cached in memory (optionally in an ``.npz``), so the head trains in seconds per
epoch. The result is a ``save_converted`` directory that ``predict`` uses when it is placed at
``<model_dir>/plddt/``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import pathlib
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from simplefold.constants import LDDT_INCLUSION_RADIUS, LDDT_THRESHOLDS, PLDDT_NUM_BINS, TAU_TRAINING
from simplefold.training.config import (
    ConfigError,
    DataSection,
    SectionedConfig,
    parse_value,
    read_config_json,
    sections_from_dict,
)
from simplefold.utils.files import atomic_open, json_safe, publish_directory

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
CONFIG_FILE = "train_plddt_config.json"
#: Cached per-token arrays of a confidence set (besides the per-sample ones).
_TOKEN_KEYS = ("latent", "target", "mask", "token_pad_mask", "residue_index", "entity_id", "asym_id", "sym_id")
_SAMPLE_KEYS = ("chain", "partial", "start_time", "allatom_lddt")
_HEAD_FEATURES = ("residue_index", "entity_id", "asym_id", "sym_id", "token_pad_mask")


# ======================================================================================
# Configuration
# ======================================================================================


@dataclasses.dataclass(frozen=True)
class HeadSection:
    """The head: trunk width (fixed by the folding model), ``depth`` blocks, ``num_heads`` (None = trunk's)."""

    depth: int = 2
    num_heads: int | None = None
    num_bins: int = PLDDT_NUM_BINS
    init_seed: int = 0


@dataclasses.dataclass(frozen=True)
class ChainsSection:
    """Which prepared chains are sampled, and their crops (Boltz neighbourhood crops, as in training)."""

    train_split: str = "train"
    val_split: str = "dev"
    #: Seeded random subset of each split (None = all).
    max_train_chains: int | None = 300
    max_val_chains: int | None = 40
    min_length: int = 20
    max_tokens: int = 128
    max_atoms: int = 1024
    #: Pad every crop to the budget (one compiled sampler) instead of length buckets.
    pad_to_max: bool = True
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class SamplesSection:
    """Structures per chain: ``num_samples`` from noise and ``num_partial`` from a noised truth.

    ``num_steps`` (from noise, official log grid) should be ≥ 230: with fewer the first sampler
    step amplifies the noise and the samples explode (``SamplerConfig.noise_gains``); a warning
    is logged. Partial trajectories start at t0 ≥ 0.4 on a uniform grid and are stable.
    """

    num_samples: int = 2
    num_steps: int = 250
    tau: float = TAU_TRAINING
    num_partial: int = 2
    #: t0 of a partial trajectory, drawn per chain from this list (higher = closer to the truth).
    partial_start_times: tuple[float, ...] = (0.4, 0.6, 0.8)
    #: Steps of a partial trajectory (uniform grid from t0 to 1).
    partial_num_steps: int = 10
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class FitSection:
    """AdamW on the cached set: linear warm-up to ``lr``, cosine decay to ``lr · min_lr_ratio``.

    ``holdout_fraction`` of the training *chains* is kept out of the fit; the epoch with the lowest
    loss on them is the one saved (the head overfits a few hundred chains quickly). The dev split
    is never used for selection, only reported.
    """

    epochs: int = 12
    batch_size: int = 16
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 50
    weight_decay: float = 0.05
    grad_clip_norm: float = 1.0
    holdout_fraction: float = 0.1
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class PLDDTTrainConfig(SectionedConfig):
    """A complete ``train-plddt`` run (JSON sections ``head``, ``chains``, ``samples``, ``fit``)."""

    head: HeadSection = dataclasses.field(default_factory=HeadSection)
    chains: ChainsSection = dataclasses.field(default_factory=ChainsSection)
    samples: SamplesSection = dataclasses.field(default_factory=SamplesSection)
    fit: FitSection = dataclasses.field(default_factory=FitSection)


def plddt_config_from_dict(data: Mapping[str, Any], where: str = "config") -> PLDDTTrainConfig:
    """Build a :class:`PLDDTTrainConfig` from nested dicts; missing keys keep their defaults.

    Raises:
      simplefold.training.config.ConfigError: unknown section/key or a value of the wrong type.
    """
    # the section parser of the training config gives the same type checks and messages
    return sections_from_dict(PLDDTTrainConfig, data, where)


def load_plddt_config(path: str | os.PathLike | None, overrides: Sequence[str] = ()) -> PLDDTTrainConfig:
    """Read a JSON config (None = defaults) and apply ``section.key=value`` overrides.

    Raises:
      simplefold.training.config.ConfigError: names the file or the override.
    """
    data: dict[str, Any] = {} if path is None else read_config_json(path)
    where = "defaults" if path is None else str(path)
    merged = plddt_config_from_dict(data, where).to_dict()
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected section.key=value")
        key, text = item.split("=", 1)
        parts = key.strip().split(".")
        if len(parts) != 2 or parts[0] not in merged or parts[1] not in merged[parts[0]]:
            raise ConfigError(f"override {item!r}: unknown key {key!r} (sections: {', '.join(sorted(merged))})")
        merged[parts[0]][parts[1]] = parse_value(text)
    return plddt_config_from_dict(merged, "overrides" if overrides else where)


# ======================================================================================
# Targets and loss
# ======================================================================================


def token_lddt_targets(
    pred_coords: np.ndarray,
    true_coords: np.ndarray,
    atom_mask: np.ndarray,
    rep_atom: np.ndarray,
    center_atom: np.ndarray,
    *,
    cutoff: float = LDDT_INCLUSION_RADIUS,
    thresholds: Sequence[float] = LDDT_THRESHOLDS,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-token lDDT target of the official pLDDT loss (AF3/Boltz ``plddt_loss``).

    For token i with representative atom r_i and every token j with centre atom c_j (CA), the pair
    counts when both atoms are resolved, r_i ≠ c_j (same atom) and ``|true_r_i − true_c_j| < cutoff``;
    it scores the fraction of ``thresholds`` with ``|d_pred − d_true| < threshold``.

    Args:
      pred_coords: ``(..., A, 3)`` predicted atoms, Å (leading sample axes allowed).
      true_coords: ``(A, 3)`` ground truth, Å.
      atom_mask: ``(A,)`` resolved atoms of the ground truth.
      rep_atom: ``(M,)`` atom index of each token's representative atom (CB, CA for GLY).
      center_atom: ``(M,)`` atom index of each token's centre atom (CA).
      cutoff: inclusion radius on the true distance, Å (strict).
      thresholds: distance-error thresholds, Å (strict).

    Returns:
      ``(lddt, valid)``: ``(..., M)`` float32 in [0, 1] (0 where not valid) and ``(M,)`` bool,
      True where the representative atom is resolved and the token has at least one counted pair.
    """
    pred = np.asarray(pred_coords, np.float64)
    true = np.asarray(true_coords, np.float64)
    mask = np.asarray(atom_mask, bool)
    rep = np.asarray(rep_atom, np.int64)
    ctr = np.asarray(center_atom, np.int64)

    def dists(x):
        return np.linalg.norm(x[..., rep, None, :] - x[..., None, ctr, :], axis=-1)  # (..., M, M)

    d_true = dists(true)
    pair = mask[rep][:, None] & mask[ctr][None, :] & (rep[:, None] != ctr[None, :])
    scored = pair & (d_true < cutoff)
    err = np.abs(dists(pred) - d_true)
    score = np.mean([err < c for c in thresholds], axis=0)
    count = scored.sum(-1)
    valid = (count > 0) & mask[rep]
    lddt = np.sum(score * scored, axis=-1) / np.maximum(count, 1)
    return np.where(valid, lddt, 0.0).astype(np.float32), valid


def lddt_to_bins(lddt: np.ndarray, num_bins: int = PLDDT_NUM_BINS) -> np.ndarray:
    """``min(floor(lddt · num_bins), num_bins − 1)`` as int32 (works on numpy and jax arrays)."""
    import jax.numpy as jnp

    xp = jnp if not isinstance(lddt, np.ndarray) else np
    return xp.clip(xp.floor(lddt * num_bins).astype(xp.int32), 0, num_bins - 1)


def plddt_loss_per_example(logits, target_lddt, mask):
    """Official pLDDT cross-entropy of each example.

    Args:
      logits: ``(B, M, bins)``; target_lddt: ``(B, M)`` in [0, 1]; mask: ``(B, M)`` tokens scored.

    Returns:
      ``(B,)``: the mean CE over the masked tokens of each example (1e-7-regularised denominator).
    """
    import jax
    import jax.numpy as jnp

    bins = lddt_to_bins(target_lddt, logits.shape[-1])
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    ce = -jnp.take_along_axis(logp, bins[..., None], axis=-1)[..., 0]
    mask = mask.astype(jnp.float32)
    return jnp.sum(ce * mask, axis=-1) / (1e-7 + jnp.sum(mask, axis=-1))


def plddt_loss(logits, target_lddt, mask):
    """Scalar training loss: :func:`plddt_loss_per_example` averaged over the batch (official)."""
    import jax.numpy as jnp

    return jnp.mean(plddt_loss_per_example(logits, target_lddt, mask))


# ======================================================================================
# The cached set of (latent, target) examples
# ======================================================================================


@dataclasses.dataclass
class ConfidenceSet:
    """Cached head inputs and targets, one row per sampled structure, padded to ``M`` tokens.

    Per token (K, M): ``latent`` (K, M, D) float32, ``target`` lDDT, ``mask`` (scored tokens),
    ``token_pad_mask``, ``residue_index``/``entity_id``/``asym_id``/``sym_id``. Per sample (K,):
    ``chain`` (index into ``chain_ids``), ``partial`` (1 = started from the noised truth),
    ``start_time`` (t0; 0 for samples from noise), ``allatom_lddt`` (global all-atom lDDT of the
    sample, :func:`simplefold.evaluation.metrics.lddt`).
    """

    arrays: dict[str, np.ndarray]
    chain_ids: list[str]
    fingerprint: str = ""

    def __len__(self) -> int:
        return int(self.arrays["latent"].shape[0])

    def __getitem__(self, key: str) -> np.ndarray:
        return self.arrays[key]

    def save(self, path: str | os.PathLike) -> pathlib.Path:
        """Write an ``.npz`` (atomically)."""
        path = pathlib.Path(path)
        meta = json.dumps({"chain_ids": self.chain_ids, "fingerprint": self.fingerprint})
        with atomic_open(path, "wb") as fh:
            np.savez(fh, _meta=np.asarray(meta), **self.arrays)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> ConfidenceSet:
        """Read a set written by :meth:`save`. Raises ValueError naming the file if it is not one."""
        try:
            with np.load(path) as z:
                meta = json.loads(str(z["_meta"]))
                arrays = {k: z[k] for k in _TOKEN_KEYS + _SAMPLE_KEYS}
        except (OSError, KeyError, ValueError) as exc:
            raise ValueError(f"{path}: not a pLDDT training cache ({exc})") from exc
        return cls(arrays, list(meta["chain_ids"]), meta.get("fingerprint", ""))

    def subset(self, rows: np.ndarray) -> ConfidenceSet:
        return ConfidenceSet({k: v[rows] for k, v in self.arrays.items()}, self.chain_ids, self.fingerprint)

    def target_summary(self) -> dict[str, float]:
        """Distribution of the scored per-token targets (mean, std, quantiles) and counts."""
        t = self.arrays["target"][self.arrays["mask"] > 0]
        q = np.quantile(t, [0.1, 0.5, 0.9]) if t.size else [float("nan")] * 3
        return {
            "samples": len(self),
            "chains": len(set(self.arrays["chain"].tolist())),
            "tokens": int(t.size),
            "lddt_mean": float(t.mean()) if t.size else float("nan"),
            "lddt_std": float(t.std()) if t.size else float("nan"),
            "lddt_p10": float(q[0]),
            "lddt_p50": float(q[1]),
            "lddt_p90": float(q[2]),
        }


def _select_records(data_dir, split: str, max_chains: int | None, min_length: int, seed: int):
    from simplefold.io.dataset import load_records

    records = load_records(data_dir, split, min_length=min_length)
    if max_chains is not None and len(records) > max_chains:
        keep = np.random.default_rng([seed, 7]).permutation(len(records))[:max_chains]
        records = [records[i] for i in sorted(keep.tolist())]
    return records


def _fill_unresolved(coords: np.ndarray, resolved: np.ndarray, atom_residue: np.ndarray) -> np.ndarray:
    """Unresolved atoms at the mean of their residue's resolved atoms (start of a partial trajectory)."""
    out = np.array(coords, np.float32)
    n_res = int(atom_residue.max()) + 1
    w = resolved.astype(np.float64)
    sums = np.zeros((n_res, 3))
    np.add.at(sums, atom_residue, coords * w[:, None])
    counts = np.bincount(atom_residue, weights=w, minlength=n_res)
    means = sums / np.maximum(counts, 1)[:, None]
    fill = ~resolved & (counts[atom_residue] > 0)
    out[fill] = means[atom_residue[fill]]
    return out


def _crop_features(data_dir, record, chains: ChainsSection, rng: np.random.Generator) -> dict[str, np.ndarray]:
    from simplefold.training import loader
    from simplefold.io.dataset import load_chain

    chain = load_chain(data_dir, record)
    crop = DataSection(max_tokens=chains.max_tokens, max_atoms=chains.max_atoms)
    return loader.featurize_crop(chain, loader.crop_chain(chain, crop, rng))


def _chain_examples(network, feats: dict[str, np.ndarray], cfg: PLDDTTrainConfig, key, rng, *, condition: str):
    """Sample structures of one crop, their t = 1 latents and targets (unpadded to the set's M)."""
    import jax
    import jax.numpy as jnp

    from simplefold import features as F
    from simplefold.evaluation import metrics
    from simplefold.sampling import flow, sampler
    from simplefold.training import loader

    s = cfg.samples
    a = int(feats["atom_pad_mask"].sum())
    m = int(feats["token_pad_mask"].shape[0])
    c = cfg.chains
    batch = loader.pad_batch([loader.compact_features(feats, condition=condition)], max_tokens=c.max_tokens,
                             max_atoms=c.max_atoms, pad_to_max=c.pad_to_max)
    prepared = network.prepare(batch)
    k_full, k_part, k_rot, k_noise = jax.random.split(key, 4)
    outputs, partial, start = [], [], []
    if s.num_samples > 0:
        y = sampler.sample(network, prepared, num_steps=s.num_steps, tau=s.tau,
                           key=jax.random.split(k_full, s.num_samples))
        outputs.append(y)
        partial += [0] * s.num_samples
        start += [0.0] * s.num_samples
    if s.num_partial > 0 and s.partial_start_times:
        t0 = float(s.partial_start_times[int(rng.integers(len(s.partial_start_times)))])
        n = batch["atom_pad_mask"].shape[1]
        truth = np.zeros((n, 3), np.float32)
        truth[:a] = _fill_unresolved(feats["coords"][:a], feats["atom_resolved_mask"][:a].astype(bool),
                                     feats["atom_to_token_idx"][:a])
        rot = flow.random_rotation(k_rot, (s.num_partial,))
        x1 = jnp.einsum("nj,sij->sni", jnp.asarray(truth), rot) * batch["atom_pad_mask"][..., None]
        x0 = jax.random.normal(k_noise, x1.shape, jnp.float32)
        y0 = flow.interpolate(x0, x1, jnp.float32(t0))
        y = sampler.sample(network, prepared, num_steps=s.partial_num_steps, tau=s.tau, t_start=t0,
                           log_timesteps=False, initial_noise=y0, key=jax.random.split(k_part, s.num_partial))
        outputs.append(y)
        partial += [1] * s.num_partial
        start += [t0] * s.num_partial
    y = jnp.concatenate(outputs, axis=0)
    pad = jnp.broadcast_to(jnp.asarray(batch["atom_pad_mask"]), y.shape[:2])
    y_c = flow.center(y, pad)  # official pLDDT training: the latent of the *centred* sample
    latent = np.asarray(network(y_c, jnp.ones((y.shape[0],), jnp.float32), prepared)["latent"])[:, :m]

    pred = np.asarray(y_c)[:, :a] * F.COORD_SCALE
    true = feats["coords"][:a] * F.COORD_SCALE
    resolved = feats["atom_resolved_mask"][:a].astype(bool)
    rep = np.argmax(feats["token_to_rep_atom"], -1)
    ctr = np.argmax(feats["r_set_to_rep_atom"], -1)
    target, valid = token_lddt_targets(pred, true, resolved, rep, ctr)
    allatom = [metrics.lddt(p, true, resolved, feats["atom_to_token_idx"][:a]) for p in pred]
    k = y.shape[0]
    rows = {
        "latent": latent.astype(np.float32),
        "target": target,
        "mask": np.broadcast_to(valid, (k, m)).astype(np.float32),
        "token_pad_mask": np.ones((k, m), np.float32),
        **{name: np.broadcast_to(feats[name].astype(np.int32), (k, m)) for name in _HEAD_FEATURES[:4]},
        "partial": np.asarray(partial, np.int8),
        "start_time": np.asarray(start, np.float32),
        "allatom_lddt": np.asarray(allatom, np.float32),
    }
    return rows


def _stack_rows(rows: list[dict[str, np.ndarray]], chain_index: list[int], max_tokens: int, width: int) -> dict:
    k = sum(r["latent"].shape[0] for r in rows)
    out = {
        "latent": np.zeros((k, max_tokens, width), np.float32),
        "target": np.zeros((k, max_tokens), np.float32),
        "mask": np.zeros((k, max_tokens), np.float32),
        "token_pad_mask": np.zeros((k, max_tokens), np.float32),
        **{name: np.zeros((k, max_tokens), np.int32) for name in _HEAD_FEATURES[:4]},
    }
    i = 0
    for r in rows:
        n, m = r["latent"].shape[:2]
        for name in out:
            out[name][i : i + n, :m] = r[name]
        i += n
    out["chain"] = np.concatenate([np.full(r["latent"].shape[0], c, np.int32) for r, c in zip(rows, chain_index)])
    for name in ("partial", "start_time", "allatom_lddt"):
        out[name] = np.concatenate([r[name] for r in rows])
    return out


def build_confidence_set(
    network,
    data_dir: str | os.PathLike,
    split: str,
    cfg: PLDDTTrainConfig,
    *,
    max_chains: int | None,
    esm_encoder: Any = None,
    fingerprint: str = "",
    progress: bool = True,
) -> ConfidenceSet:
    """Sample, embed and score chains of one split (see the module docstring).

    Args:
      network: the frozen folding model, a :class:`simplefold.model.folding.FoldingModel`
        (``prepare`` + ``network(y, t, feats)``) or anything ``sampler.sample`` accepts that also
        returns ``"latent"``.
      data_dir: prepared dataset (``simplefold prepare-data``).
      split: which records (e.g. "train").
      cfg: the run config (crops, sampling).
      max_chains: seeded subset size (None = all records of the split).
      esm_encoder: ESM2 encoder for an ESM-conditioned network (ESM runs on the cropped sequence).
      fingerprint: stored with the set (to validate a cache).
      progress: tqdm bar over chains.

    Raises:
      ValueError: the split has no records, or an ESM-conditioned network without ``esm_encoder``.
    """
    import jax
    from tqdm import tqdm

    from simplefold import residues

    config = getattr(network, "config", None)
    condition = getattr(config, "condition", "embedding")
    if condition == "esm" and esm_encoder is None:
        raise ValueError("the folding model is ESM-conditioned: pass esm_encoder= (an ESM2Encoder)")
    width = int(config.hidden_size)
    c = cfg.chains
    records = _select_records(data_dir, split, max_chains, c.min_length, c.seed)
    if not records:
        raise ValueError(f"{data_dir}: no records in split {split!r} with at least {c.min_length} residues")
    rows, chain_index = [], []
    base = jax.random.key(cfg.samples.seed)
    for i, rec in enumerate(tqdm(records, desc=f"sample {split}", unit="chain", disable=not progress)):
        rng = np.random.default_rng([c.seed, int(hashlib.sha256(rec.id.encode()).hexdigest()[:8], 16)])
        feats = _crop_features(data_dir, rec, c, rng)
        if condition == "esm":
            from simplefold import esm

            seq = "".join(residues.res_name_to_one(r) for r in np.asarray(residues.RES_TYPES)[
                np.argmax(feats["res_type"], -1)])
            feats["esm_s"] = esm.esm_features(esm_encoder, [seq])[0]
        key = jax.random.fold_in(base, int(hashlib.sha256(rec.id.encode()).hexdigest()[:7], 16))
        rows.append(_chain_examples(network, feats, cfg, key, rng, condition=condition))
        chain_index.append(i)
    return ConfidenceSet(_stack_rows(rows, chain_index, c.max_tokens, width), [r.id for r in records], fingerprint)


# ======================================================================================
# Training the head
# ======================================================================================


def head_config(folding_config, head: HeadSection):
    """The :class:`PLDDTConfig` of a head for ``folding_config`` (width = trunk width)."""
    from simplefold.model.config import PLDDTConfig

    return PLDDTConfig(
        name=f"plddt_{getattr(folding_config, 'name', 'custom')}",
        hidden_size=int(folding_config.hidden_size),
        num_heads=int(head.num_heads or folding_config.num_heads),
        depth=head.depth,
        num_bins=head.num_bins,
    )


def _batch(data: ConfidenceSet, rows: np.ndarray) -> dict[str, np.ndarray]:
    keys = ("latent", "target", "mask") + _HEAD_FEATURES
    return {k: data[k][rows] for k in keys}


def _make_fns(graphdef, rest, tx):
    import jax
    import optax
    from flax import nnx

    def forward(params, batch):
        head = nnx.merge(graphdef, params, rest)
        return head(batch["latent"], {k: batch[k] for k in _HEAD_FEATURES})

    def loss_fn(params, batch):
        return plddt_loss(forward(params, batch)["plddt_logits"], batch["target"], batch["mask"])

    @jax.jit
    def train_step(params, opt_state, batch):
        loss, grads = jax.value_and_grad(loss_fn)(params, batch)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    @jax.jit
    def predict(params, batch):
        out = forward(params, batch)
        return out["plddt"], plddt_loss_per_example(out["plddt_logits"], batch["target"], batch["mask"])

    return train_step, predict


def _rows_in_batches(n: int, batch_size: int) -> list[tuple[np.ndarray, int]]:
    """Fixed-size row batches covering ``0..n-1`` and their count of real rows; the last batch is
    topped up with repeated leading rows so that every batch has one shape (one compilation)."""
    out = []
    for lo in range(0, n, batch_size):
        rows = np.arange(lo, min(lo + batch_size, n))
        real = len(rows)
        if real < batch_size:
            rows = np.concatenate([rows, np.arange(batch_size - real) % n])
        out.append((rows, real))
    return out


def _predict(predict, params, data: ConfidenceSet, batch_size: int) -> tuple[np.ndarray, float]:
    plddt = np.zeros(data["target"].shape, np.float32)
    losses = np.zeros(len(data), np.float64)
    has_token = data["mask"].sum(-1) > 0
    for rows, real in _rows_in_batches(len(data), batch_size):
        p, loss = predict(params, _batch(data, rows))
        plddt[rows[:real]] = np.asarray(p)[:real]
        losses[rows[:real]] = np.asarray(loss)[:real]
    return plddt, float(losses[has_token].mean()) if has_token.any() else float("nan")


def predict_plddt(head, data: ConfidenceSet, batch_size: int = 16) -> tuple[np.ndarray, float]:
    """Head pLDDT ``(K, M)`` in [0, 1] on a cached set, and the mean loss over its samples."""
    from flax import nnx

    graphdef, params, rest = nnx.split(head, nnx.Param, ...)
    _, predict = _make_fns(graphdef, rest, None)
    return _predict(predict, params, data, batch_size)


def marginal_loss(train: ConfidenceSet, data: ConfidenceSet, num_bins: int = PLDDT_NUM_BINS) -> float:
    """Loss of the best input-independent predictor: the training set's bin histogram (a baseline)."""
    counts = np.bincount(lddt_to_bins(train["target"][train["mask"] > 0], num_bins), minlength=num_bins) + 1.0
    logp = np.log(counts / counts.sum())
    ce = -logp[lddt_to_bins(data["target"], num_bins)]
    m = data["mask"]
    per = (ce * m).sum(-1) / (1e-7 + m.sum(-1))
    return float(per[m.sum(-1) > 0].mean())


def split_by_chain(data: ConfidenceSet, fraction: float, seed: int) -> tuple[ConfidenceSet, ConfidenceSet | None]:
    """(fit, holdout): a seeded ``fraction`` of the chains (at least one, if any) goes to holdout."""
    chains = np.unique(data["chain"])
    n_hold = int(round(fraction * len(chains)))
    if fraction <= 0 or len(chains) < 2:
        return data, None
    held = np.random.default_rng([seed, 11]).permutation(chains)[: max(1, min(n_hold, len(chains) - 1))]
    is_held = np.isin(data["chain"], held)
    return data.subset(np.flatnonzero(~is_held)), data.subset(np.flatnonzero(is_held))


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.size < 2 or x.std() == 0 or y.std() == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def evaluate_predictions(plddt: np.ndarray, data: ConfidenceSet) -> dict[str, float]:
    """Agreement of predicted pLDDT ``(K, M)`` in [0, 1] with the true lDDT of a cached set.

    Keys: ``token_pearson`` (all scored tokens), ``chain_pearson`` (per sample: mean pLDDT vs mean
    target lDDT), ``chain_pearson_allatom`` (mean pLDDT vs the global all-atom lDDT), ``token_mae``
    (×100), the same restricted to the samples drawn from noise (``*_from_noise``, what
    ``predict`` produces), and the sample counts.
    """
    mask = data["mask"] > 0
    out: dict[str, float] = {}
    for suffix, rows in (("", np.ones(len(data), bool)), ("_from_noise", data["partial"] == 0)):
        m = mask & rows[:, None]
        keep = m.any(-1)
        n_tok = np.maximum(m.sum(-1), 1)
        mean_pred = ((plddt * m).sum(-1) / n_tok)[keep]
        mean_true = ((data["target"] * m).sum(-1) / n_tok)[keep]
        out[f"token_pearson{suffix}"] = _pearson(plddt[m], data["target"][m])
        out[f"chain_pearson{suffix}"] = _pearson(mean_pred, mean_true)
        out[f"chain_pearson_allatom{suffix}"] = _pearson(mean_pred, data["allatom_lddt"][keep])
        out[f"token_mae{suffix}"] = float(np.mean(np.abs(plddt[m] - data["target"][m])) * 100) if m.any() else float("nan")
        out[f"samples{suffix}"] = int(keep.sum())
    return out


@dataclasses.dataclass(frozen=True)
class HeadTrainResult:
    """A trained head, its history (``epoch``, ``train_loss``, ``holdout_loss``, ``dev_loss``) and the kept epoch."""

    head: Any  # PLDDTHead
    history: list[dict[str, float]]
    best_epoch: int


def train_head(
    train: ConfidenceSet,
    folding_config,
    cfg: PLDDTTrainConfig,
    *,
    holdout: ConfidenceSet | None = None,
    dev: ConfidenceSet | None = None,
    progress: bool = True,
) -> HeadTrainResult:
    """Fit a fresh :class:`PLDDTHead` to a cached set with AdamW (``cfg.fit``).

    Args:
      train: cached training examples (:func:`build_confidence_set`).
      folding_config: the folding model's config (head width = its ``hidden_size``).
      cfg: ``head`` and ``fit`` sections are used.
      holdout: optional set for model selection: the weights of the epoch with the lowest holdout
        loss are returned (else those of the last epoch).
      dev: optional set whose loss is logged after every epoch (never used for selection).
      progress: tqdm bar over epochs.
    """
    import jax
    import optax
    from flax import nnx
    from tqdm import tqdm

    from simplefold.model.plddt import PLDDTHead

    f = cfg.fit
    hcfg = head_config(folding_config, cfg.head)
    if train["latent"].shape[-1] != hcfg.hidden_size:
        raise ValueError(f"cached latents have width {train['latent'].shape[-1]}, the model's trunk {hcfg.hidden_size}")
    head = PLDDTHead(hcfg, rngs=nnx.Rngs(cfg.head.init_seed))
    graphdef, params, rest = nnx.split(head, nnx.Param, ...)
    batches_per_epoch = math.ceil(len(train) / f.batch_size)
    total = max(1, f.epochs * batches_per_epoch)
    warmup = min(f.warmup_steps, total - 1)
    schedule = optax.warmup_cosine_decay_schedule(
        init_value=f.lr * 0.01, peak_value=f.lr, warmup_steps=max(warmup, 0), decay_steps=total,
        end_value=f.lr * f.min_lr_ratio,
    )
    tx = optax.chain(optax.clip_by_global_norm(f.grad_clip_norm), optax.adamw(schedule, weight_decay=f.weight_decay))
    opt_state = tx.init(params)
    train_step, predict = _make_fns(graphdef, rest, tx)
    rng = np.random.default_rng(f.seed)
    history: list[dict[str, float]] = []
    best = (math.inf, 0, params)
    bar = tqdm(range(f.epochs), desc="train head", unit="epoch", disable=not progress)
    for epoch in bar:
        order = rng.permutation(len(train))
        losses = []
        for rows, _ in _rows_in_batches(len(train), f.batch_size):
            params, opt_state, loss = train_step(params, opt_state, _batch(train, order[rows]))
            losses.append(loss)
        record = {"epoch": epoch + 1, "train_loss": float(np.mean(jax.device_get(losses)))}
        if holdout is not None and len(holdout):
            record["holdout_loss"] = _predict(predict, params, holdout, f.batch_size)[1]
            if record["holdout_loss"] < best[0]:
                best = (record["holdout_loss"], epoch + 1, params)
        if dev is not None:
            record["dev_loss"] = _predict(predict, params, dev, f.batch_size)[1]
        history.append(record)
        bar.set_postfix({k: round(v, 4) for k, v in record.items() if k != "epoch"})
        logger.info("epoch %d: %s", epoch + 1, {k: round(v, 4) for k, v in record.items() if k != "epoch"})
    if best[1] > 0:
        logger.info("keeping the head of epoch %d (lowest holdout loss %.4f)", best[1], best[0])
        params = best[2]
    return HeadTrainResult(nnx.merge(graphdef, params, rest), history, best[1] or f.epochs)


# ======================================================================================
# The whole run
# ======================================================================================


def _fingerprint(network, data_dir, split: str, cfg: PLDDTTrainConfig) -> str:
    import jax

    config = getattr(network, "config", None)
    state = getattr(network, "state", None)
    # a cheap checksum of the weights so that a cache of another checkpoint is not reused
    weights = float(sum(float(np.abs(np.asarray(x, np.float64)).sum()) for x in jax.tree.leaves(state))) if state else 0
    payload = {
        "model": config.to_dict() if hasattr(config, "to_dict") else repr(config),
        "weights": round(weights, 3),
        "data": str(pathlib.Path(data_dir).absolute()),
        "split": split,
        "chains": dataclasses.asdict(cfg.chains),
        "samples": dataclasses.asdict(cfg.samples),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _cached_set(network, data_dir, split, cfg, max_chains, cache_dir, esm_encoder, progress) -> ConfidenceSet:
    fp = _fingerprint(network, data_dir, split, cfg)
    path = pathlib.Path(cache_dir) / f"{split}-{fp}.npz" if cache_dir is not None else None
    if path is not None and path.is_file():
        data = ConfidenceSet.load(path)
        if data.fingerprint == fp:
            logger.info("using cached %s samples from %s", split, path)
            return data
    t = time.perf_counter()
    data = build_confidence_set(network, data_dir, split, cfg, max_chains=max_chains, esm_encoder=esm_encoder,
                                fingerprint=fp, progress=progress)
    logger.info("%s: %d samples of %d chains in %.0f s", split, len(data), len(data.chain_ids), time.perf_counter() - t)
    if path is not None:
        data.save(path)
    return data


def train_plddt(
    model: Any,
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    cfg: PLDDTTrainConfig = PLDDTTrainConfig(),
    *,
    cache_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Sample, train a head, evaluate it on the dev split and save it (the ``train-plddt`` command).

    Args:
      model: folding model: a converted directory, "demo", a released name, or a loaded
        :class:`simplefold.predict.loading.LoadedModel` (see ``load_model``).
      data_dir: prepared dataset with ``cfg.chains.train_split`` / ``val_split`` records.
      out_dir: directory to create: the head (``save_converted``: ``config.json`` + ``state/``),
        ``metrics.json`` and ``train_plddt_config.json``. Copy it to ``<model_dir>/plddt/`` to
        make ``predict`` use it.
      cfg: run config.
      cache_dir: keep the sampled sets here (``<split>-<fingerprint>.npz``) and reuse them when
        the model, data and sampling settings are unchanged.
      overwrite: replace an existing ``out_dir``.
      progress: tqdm bars.

    Returns:
        the metrics dict written to ``metrics.json`` (NaN where a correlation is undefined; null in the file).

    Raises:
      simplefold.training.export.ExportError: ``out_dir`` exists without ``overwrite``.
      ValueError / FileNotFoundError: bad data directory or model.
    """
    from simplefold.weights import checkpoints
    from simplefold.predict.loading import load_model
    from simplefold.training.export import ExportError

    out = pathlib.Path(out_dir).expanduser().absolute()
    if out.exists() and not overwrite:
        raise ExportError(f"{out}: already exists (pass overwrite=True / --overwrite to replace it)")
    if cfg.samples.num_samples > 0:
        from simplefold.sampling.sampler import SamplerConfig

        unstable = SamplerConfig(num_steps=cfg.samples.num_steps, tau=cfg.samples.tau).stability_warning()
        if unstable:  # the head would learn from exploded structures that predict never writes
            logger.warning("samples.num_steps=%d: %s", cfg.samples.num_steps, unstable)
    loaded = load_model(model, plddt=False)
    network, folding_cfg = loaded.network, loaded.config
    esm_encoder = loaded.ensure_esm() if loaded.condition == "esm" else None
    t0 = time.perf_counter()
    c = cfg.chains
    train = _cached_set(network, data_dir, c.train_split, cfg, c.max_train_chains, cache_dir,
                        esm_encoder, progress)
    dev = _cached_set(network, data_dir, c.val_split, cfg, c.max_val_chains, cache_dir,
                      esm_encoder, progress)
    t_sample = time.perf_counter() - t0
    fit_set, holdout = split_by_chain(train, cfg.fit.holdout_fraction, cfg.fit.seed)
    result = train_head(fit_set, folding_cfg, cfg, holdout=holdout, dev=dev, progress=progress)
    t_fit = time.perf_counter() - t0 - t_sample
    dev_plddt, dev_loss = predict_plddt(result.head, dev, cfg.fit.batch_size)
    fit_plddt, fit_loss = predict_plddt(result.head, fit_set, cfg.fit.batch_size)
    metrics = {
        "model": loaded.source or loaded.name,
        "data_dir": str(pathlib.Path(data_dir).absolute()),
        "dev": {"loss": dev_loss, "loss_marginal_baseline": marginal_loss(train, dev, cfg.head.num_bins),
                **evaluate_predictions(dev_plddt, dev), "targets": dev.target_summary()},
        "train": {"loss": fit_loss, **evaluate_predictions(fit_plddt, fit_set), "targets": fit_set.target_summary()},
        "holdout_chains": len(set(holdout["chain"].tolist())) if holdout is not None else 0,
        "best_epoch": result.best_epoch,
        "history": result.history,
        "seconds": {"sampling": round(t_sample, 1), "fit": round(t_fit, 1)},
    }
    provenance = {"model": metrics["model"], "data_dir": metrics["data_dir"], "config": cfg.to_dict()}

    def write(tmp: pathlib.Path) -> None:
        checkpoints.save_converted(result.head, tmp)
        (tmp / METRICS_FILE).write_text(json.dumps(json_safe(metrics), indent=2) + "\n")
        (tmp / CONFIG_FILE).write_text(json.dumps(provenance, indent=2, sort_keys=True) + "\n")

    publish_directory(out, write, overwrite=overwrite)
    return metrics
