"""Memory and time estimates and the per-target run plan (bucket, chunk size): ``--dry-run``.

Nothing here loads weights: a plan needs only the model's ``FoldingConfig``
(:func:`simplefold.predict.loading.model_config`). Memory is in bytes (GB = 1e9 bytes) per device,
time in seconds; both are rough and err on the high side.

A run holds one network family at a time (:mod:`simplefold.predict.run`: ESM embeddings, then
sampling, then pLDDT), so the memory of a target is the *largest phase*, not the sum
(:class:`MemoryEstimate`):

* ``esm``: the ESM2 encoder at its storage dtype (float16 kernels for the released files) + one
  forward pass and its representations;
* ``sampling``: the folding network (float32, or bfloat16 kernels with ``precision="bfloat16"``) +
  features + the sampler (:func:`simplefold.sampling.sampler.estimate_sample_memory`);
* ``plddt``: the pLDDT latent network + head (same storage rule) + features + one latent pass.

Each phase also counts :data:`RUNTIME_BYTES` (Python, JAX and the XLA compiler).

Each target is padded to a residue bucket (:func:`simplefold.features.bucket_size`) and an atom
bucket (:func:`simplefold.features.atom_bucket_size`). Its ``S`` samples run in chunks of
``chunk`` samples, the largest that fits the memory budget (:func:`estimate_memory`) and
``batch_size``, rounded up to a multiple of the device count.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from simplefold import features as F
from simplefold.model.config import ATTENTION_KEY_BLOCK
from simplefold.predict.loading import DEFAULT_MODEL, model_config, plddt_head_config, plddt_latent_config
from simplefold.predict.options import FoldOptions
from simplefold.predict.targets import Target, TargetError, as_targets, check_target

#: Fraction of a device's reported memory used as the default budget (XLA needs headroom).
DEVICE_MEMORY_FRACTION = 0.85
#: Default budget on CPU: the memory available now (``MemAvailable`` + what this process already
#: holds) minus this headroom in bytes (other programs, page cache the system keeps, estimate error).
HOST_MEMORY_HEADROOM = int(1.5e9)
#: Resident memory of the process besides the phase's arrays: Python, JAX, the XLA compiler.
RUNTIME_BYTES = int(0.8e9)
#: Bytes per linear-kernel entry of the released ESM2 files (float16, kept so in memory).
ESM_KERNEL_BYTES = 2
#: Float32 copies of bfloat16 kernels alive at once on XLA:CPU, as a fraction of a float32 copy of
#: every kernel. Measured in XLA's buffer plan (temporaries with bf16 kernels minus those with
#: float32 ones, L = 256, compiled on abstract weights): 100M sampler 0.11 GB of 0.39, 3B sampler
#: 3.5 GB of 11.4, 1.6B pLDDT trunk 2.4 GB of 6.4 (0.28-0.38); rounded up.
WIDENED_KERNEL_FRACTION = 0.45
#: Safety factor on the activation estimate (XLA temporaries, fusion buffers, fragmentation).
_ACTIVATION_SAFETY = 2.0


@functools.lru_cache(maxsize=None)
def count_parameters(cfg) -> int:
    """Parameters of the network a config builds (``FoldingConfig``, ``PLDDTConfig`` or ``ESM2Config``).

    Counted on the abstract module (``nnx.eval_shape``: shapes only, nothing is allocated), so the
    count is exact for any config; buffers such as the Fourier frequency table are not parameters.
    """
    import jax
    from flax import nnx

    from simplefold.model import FoldingConfig, FoldingDiT, PLDDTConfig, PLDDTHead
    from simplefold.model.esm2 import ESM2, ESM2Config

    module = {FoldingConfig: FoldingDiT, PLDDTConfig: PLDDTHead, ESM2Config: ESM2}[type(cfg)]
    abstract = nnx.eval_shape(lambda: module(cfg, rngs=nnx.Rngs(0)))
    return sum(math.prod(x.shape) for x in jax.tree.leaves(nnx.state(abstract, nnx.Param)))


@functools.lru_cache(maxsize=None)
def parameter_bytes(cfg, precision: str | None = None, *, kernel_bytes: int | None = None) -> int:
    """Bytes of a network's weights as inference stores them.

    ``FoldingConfig`` / ``PLDDTConfig``: float32, with the linear kernels in bfloat16 for
    ``precision="bfloat16"`` (:func:`simplefold.model.precision.inference_storage`). ``ESM2Config``:
    kernels at ``kernel_bytes`` (default :data:`ESM_KERNEL_BYTES`, the released float16), the rest
    float32. Counted on the abstract module, nothing is allocated.
    """
    import jax
    from flax import nnx

    from simplefold.model import FoldingConfig, FoldingDiT, PLDDTConfig, PLDDTHead
    from simplefold.model.esm2 import ESM2, ESM2Config
    from simplefold.model.precision import with_precision

    if isinstance(cfg, ESM2Config):
        abstract = nnx.eval_shape(lambda: ESM2(cfg, rngs=nnx.Rngs(0)))
        kb = ESM_KERNEL_BYTES if kernel_bytes is None else kernel_bytes
    else:
        cfg = with_precision(cfg, precision)
        module = {FoldingConfig: FoldingDiT, PLDDTConfig: PLDDTHead}[type(cfg)]
        abstract = nnx.eval_shape(lambda: module(cfg, rngs=nnx.Rngs(0)))
        kb = 2 if cfg.dtype == "bfloat16" else 4
    total = 0
    for path, var in nnx.to_flat_state(nnx.state(abstract, nnx.Param)):
        n = math.prod(var.get_value().shape)
        total += n * (kb if path and path[-1] == "kernel" else 4)
    del jax
    return total


def esm_config(cfg):
    """The released ESM2 whose representations an ESM-conditioned ``cfg`` reads (matched on
    ``esm_num_layers`` and ``esm_dim``: ESM2-3B for every released model), or None."""
    if cfg.condition != "esm":
        return None
    from simplefold.model.esm2 import ESM2_CONFIGS

    for esm in ESM2_CONFIGS.values():
        if (esm.num_representations, esm.embed_dim) == (cfg.esm_num_layers, cfg.esm_dim):
            return esm
    return None


def _feature_bytes(num_tokens: int, num_atoms: int, esm_layers: int, esm_dim: int) -> int:
    sizes = {"N": num_atoms, "M": num_tokens, "E": esm_layers, "C": esm_dim}
    total = 0
    for name, spec in F.FEATURE_SCHEMA.items():
        if name in F.OPTIONAL_FEATURES and name != "esm_s":
            continue
        if name == "esm_s" and not esm_layers:
            continue
        n = 1
        for s in spec.shape:
            n *= sizes.get(s, s) if isinstance(s, str) else s
        # int64 features become int32 on the device (x64 off); count the host copy too
        total += n * np.dtype(spec.dtype).itemsize * 2
    return total


def _activation_bytes_per_sample(cfg, num_tokens: int, num_atoms: int) -> int:
    """Peak live activations of one network call for one sample (float32, no gradients)."""
    d, da = cfg.hidden_size, cfg.atom_hidden_size
    m, n = num_tokens, num_atoms
    # + attention logits/probabilities and the per-key-block partial value products
    trunk = m * (10 * d + 3 * cfg.trunk_mlp_hidden) + cfg.num_heads * m * m * 2 + m * d * -(-m // ATTENTION_KEY_BLOCK)
    atom = n * (10 * da + 3 * cfg.atom_mlp_hidden + cfg.atom_num_heads * cfg.n_keys * 2)
    atom_in = n * (cfg.atom_feat_dim + 2 * cfg.fourier_dim + 4 * d)
    return int(4 * (trunk + atom + atom_in + n * m))  # + float copy of atom_to_token


def _esm_activation_bytes(esm, num_tokens: int) -> int:
    """Live float32 bytes of one ESM2 forward pass over one sequence of ``num_tokens`` residues:
    the (T, layers + 1, D) representations kept for SimpleFold, twice (device and host copy), plus
    one block's activations (width-D streams, the feed-forward hidden, attention logits and
    probabilities) and one kernel widened to float32 inside its product."""
    t = -(-(num_tokens + 2) // 64) * 64  # <cls> + <eos>, the encoder's length bucket
    d, ffn, h = esm.embed_dim, esm.ffn_dim, esm.attention_heads
    reps = 2 * t * esm.num_representations * d
    block = t * (8 * d + 2 * ffn) + 2 * h * t * t
    widened = d * ffn
    return int(4 * (reps + _ACTIVATION_SAFETY * block + widened))


@dataclasses.dataclass(frozen=True)
class PhaseEstimate:
    """Bytes of one phase of a run: ``weights + base + max(load, work + batch * per_sample)``.

    ``base`` is :data:`RUNTIME_BYTES`; ``load`` the read buffers in flight while the phase's
    weights are restored (:func:`_load_transient`), gone before any network runs; ``work`` the
    features and activations that do not grow with the number of samples per call;
    ``per_sample`` is 0 for the ESM phase.
    """

    name: str
    weights: int
    base: int
    load: int
    work: int
    per_sample: int

    def total(self, batch: int) -> int:
        return self.weights + self.base + max(self.load, self.work + batch * self.per_sample)


#: Read buffers in flight while restoring, as a fraction of the checkpoint bytes in flight
#: (at most ``RESTORE_CONCURRENT_GB``): arrays read in their stored dtype (measured peak over the
#: weights: 1.30x for ESM2, 1.33x for a float32 folding model), and arrays converted to bfloat16
#: on the way in (the float32 read buffer next to its bfloat16 copy).
_LOAD_IN_PLACE = 0.35
_LOAD_CONVERTED = 1.0
#: Large arrays are restored one at a time, largest first
#: (:func:`simplefold.weights.checkpoints.restore_groups`), and a bfloat16 model's blocks are
#: unstacked one stack at a time: the load peak over the weights scales with the largest array
#: (measured, the 1.6B trunk with a 2.04 GB largest stack: 1.27 GB over its float32 weights,
#: 1.68 GB over its bfloat16 ones).
_LOAD_LARGEST = 0.65
_LOAD_LARGEST_CONVERTED = 0.85


@functools.lru_cache(maxsize=None)
def largest_parameter_bytes(cfg) -> int:
    """Bytes of the largest single array of a converted checkpoint (float32 as stored; e.g. the
    stacked MLP kernel of the 1.6B trunk, 2.04 GB): restored whole, it bounds the load transient."""
    import jax
    from flax import nnx

    from simplefold.model import FoldingConfig, FoldingDiT, PLDDTConfig, PLDDTHead

    module = {FoldingConfig: FoldingDiT, PLDDTConfig: PLDDTHead}[type(cfg)]
    abstract = nnx.eval_shape(lambda: module(cfg, rngs=nnx.Rngs(0)))
    return max(4 * math.prod(x.shape) for x in jax.tree.leaves(nnx.state(abstract, nnx.Param)))


def _load_transient(file_bytes: int, converted: bool, largest: int = 0) -> int:
    from simplefold.weights.checkpoints import RESTORE_CONCURRENT_GB

    in_flight = min(file_bytes, int(RESTORE_CONCURRENT_GB * 1e9))
    many = in_flight * (_LOAD_CONVERTED if converted else _LOAD_IN_PLACE)
    one = largest * (_LOAD_LARGEST_CONVERTED if converted else _LOAD_LARGEST)
    return int(max(many, one))


@dataclasses.dataclass(frozen=True)
class MemoryEstimate:
    """Bytes needed to fold one target with ``batch`` samples per call (per device): the largest phase."""

    phases: tuple[PhaseEstimate, ...]
    batch: int

    @property
    def total(self) -> int:
        return max(p.total(self.batch) for p in self.phases)

    def phase(self, name: str) -> PhaseEstimate | None:
        return next((p for p in self.phases if p.name == name), None)

    def max_batch(self, budget: int) -> int:
        """Largest batch fitting ``budget`` bytes in every phase (0 if not even one sample fits)."""
        best = 1 << 30
        for p in self.phases:
            free = budget - p.weights - p.base
            if free < p.load or free < p.work + p.per_sample:
                return 0
            if p.per_sample:
                best = min(best, int((free - p.work) // p.per_sample))
        return best


def estimate_memory(
    cfg, num_tokens: int, num_atoms: int, batch: int = 1, *, plddt: bool = False, plddt_latent_cfg=None,
    plddt_head_cfg=None, precision: str | None = None, widen_bf16_kernels: bool = False,
) -> MemoryEstimate:
    """Estimated memory of each phase of folding one target (host RAM on CPU, device memory elsewhere).

    Args:
      cfg: the ``FoldingConfig``.
      num_tokens, num_atoms: padded sizes (bucket M and N).
      batch: samples per call.
      plddt: add the pLDDT phase: the head ``plddt_head_cfg`` (when given) and the latent network
        ``plddt_latent_cfg`` (when given; the 1.6B for released models; None or ``cfg`` means the
        folding network's own latent, which then stays resident with the head).
      precision: weights' storage (:func:`parameter_bytes`).
      widen_bf16_kernels: count float32 copies of the bfloat16 kernels in the phase's work memory
        (:data:`WIDENED_KERNEL_FRACTION` of a full float32 copy). XLA:CPU widens bfloat16 matmul
        operands to float32 and schedules many of those conversions ahead of their products;
        :func:`plan_target` sets it on CPU.

    Phases (see the module docstring): ``esm`` (only for ESM-conditioned models), ``sampling`` and
    ``plddt``. Weights come from :func:`parameter_bytes` of each network's real config;
    activations err on the high side.
    """
    esm_layers, esm_dim = (cfg.esm_num_layers, cfg.esm_dim) if cfg.condition == "esm" else (0, 0)
    feats = _feature_bytes(num_tokens, num_atoms, esm_layers, esm_dim)
    phases = []
    esm = esm_config(cfg)
    if esm is not None:
        w = parameter_bytes(esm)  # stored as in the file (float16 kernels)
        phases.append(PhaseEstimate("esm", w, RUNTIME_BYTES, _load_transient(w, False),
                                    _esm_activation_bytes(esm, num_tokens), 0))
    from simplefold.sampling import sampler

    fold_w = parameter_bytes(cfg, precision)
    one = sampler.estimate_sample_memory(cfg, num_atoms, num_tokens, 1)
    shared = sampler.estimate_sample_memory(cfg, num_atoms, num_tokens, 0)
    state = 4 * num_atoms * 3 * 6  # sampler state, noise, velocity
    # converted checkpoints hold float32: bfloat16 kernels are converted while restoring
    bf16 = fold_w < 4 * count_parameters(cfg)
    # 4 * params - bf16 bytes = 2 bytes per kernel entry; a float32 copy is 4 bytes per entry
    widened = int(WIDENED_KERNEL_FRACTION * 2 * (4 * count_parameters(cfg) - fold_w)) if widen_bf16_kernels else 0
    phases.append(PhaseEstimate("sampling", fold_w, RUNTIME_BYTES,
                                _load_transient(4 * count_parameters(cfg), bf16, largest_parameter_bytes(cfg)),
                                feats + shared + widened, one - shared + state))
    if plddt and (plddt_head_cfg is not None or (plddt_latent_cfg is not None and plddt_latent_cfg != cfg)):
        own_latent = plddt_latent_cfg is None or plddt_latent_cfg == cfg
        latent = cfg if own_latent else plddt_latent_cfg
        nets = ([plddt_head_cfg] if plddt_head_cfg is not None else []) + ([] if own_latent else [latent])
        w = sum(parameter_bytes(c, precision) for c in nets) + (fold_w if own_latent else 0)
        f32 = sum(4 * count_parameters(c) for c in nets)  # what this phase restores
        load = _load_transient(f32, sum(parameter_bytes(c, precision) for c in nets) < f32,
                               max((largest_parameter_bytes(c) for c in nets), default=0))
        work = feats
        if widen_bf16_kernels:
            f32_all = f32 + (4 * count_parameters(cfg) if own_latent else 0)
            work += int(WIDENED_KERNEL_FRACTION * 2 * (f32_all - w))
        per = int(_ACTIVATION_SAFETY * _activation_bytes_per_sample(latent, num_tokens, num_atoms)) + 4 * num_atoms * 3
        phases.append(PhaseEstimate("plddt", w, RUNTIME_BYTES, load, work, per))
    return MemoryEstimate(phases=tuple(phases), batch=batch)


def forward_flops(cfg, num_tokens: int, num_atoms: int) -> float:
    """Approximate FLOPs of one network call for one sample (matmuls and attention only)."""
    d, da, m, n = cfg.hidden_size, cfg.atom_hidden_size, num_tokens, num_atoms
    trunk = cfg.depth * (2 * m * (4 * d * d + 3 * d * cfg.trunk_mlp_hidden) + 4 * m * m * d)
    atom = (cfg.atom_encoder_depth + cfg.atom_decoder_depth) * (
        2 * n * (4 * da * da + 3 * da * cfg.atom_mlp_hidden) + 4 * n * cfg.n_keys * da
    )
    proj = 2 * n * d * (cfg.atom_feat_dim + cfg.fourier_dim + 2 * d + d + 2 * da) + 2 * m * d * (cfg.esm_dim + 2 * d)
    return float(trunk + atom + proj + 4 * n * m * d)


#: Rough sustained float32 throughput (FLOP/s) by device kind, for time estimates only.
_THROUGHPUT = (
    ("h200", 120e12), ("h100", 100e12), ("a100", 50e12), ("l40", 40e12), ("a6000", 25e12), ("v100", 12e12),
    ("a10", 15e12), ("t4", 4e12), ("tpu", 80e12), ("gpu", 20e12), ("cpu", 0.15e12),
)


def device_throughput(kind: str) -> float:
    """Guess of sustained FLOP/s for a ``jax.Device.device_kind`` / platform string."""
    k = kind.lower()
    for key, value in _THROUGHPUT:
        if key in k:
            return value
    return _THROUGHPUT[-1][1]


def available_host_memory() -> int | None:
    """Bytes this process could hold now: ``MemAvailable`` (``/proc/meminfo``) plus its own resident
    set (already held, and counted in every phase estimate); None where unknown."""
    from simplefold.utils.memory import current_rss

    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            avail = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    return avail + (current_rss() or 0)


def default_memory_budget(devices: Sequence[Any] | None = None) -> int:
    """Default per-device budget in bytes: :data:`DEVICE_MEMORY_FRACTION` of an accelerator's memory;
    on CPU the available memory (:func:`available_host_memory`) minus :data:`HOST_MEMORY_HEADROOM`
    (physical RAM minus the headroom where ``/proc/meminfo`` is missing)."""
    import jax

    dev = (devices or jax.local_devices())[0]
    stats = None
    try:
        stats = dev.memory_stats()
    except Exception:  # noqa: BLE001 - not all backends implement it
        stats = None
    if dev.platform != "cpu" and stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"] * DEVICE_MEMORY_FRACTION)
    avail = available_host_memory()
    if avail is None:
        try:
            avail = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            avail = 16 * 10**9
    return max(0, int(avail - HOST_MEMORY_HEADROOM))


@dataclasses.dataclass(frozen=True)
class TargetPlan:
    """How one target will run (also the ``--dry-run`` table row)."""

    name: str
    length: int
    num_atoms: int
    bucket_tokens: int
    bucket_atoms: int
    num_samples: int
    chunk: int  # samples per call over all devices (0: does not fit)
    memory_bytes: int  # estimate per device for one chunk
    seconds: float  # estimated sampling (+ pLDDT) time
    error: str | None = None
    phase_bytes: tuple[tuple[str, int], ...] = ()  # (phase, estimate per device for one chunk), run order

    @property
    def num_chunks(self) -> int:
        return math.ceil(self.num_samples / self.chunk) if self.chunk else 0


def _sizes(target: Target) -> tuple[int, int]:
    """(residues, official atom slots) of a single-chain target without building features."""
    from simplefold import residues

    templates = residues.residue_templates()
    atoms = sum(templates.get(r, templates["UNK"]).num_atoms for r in F.sequence_to_res_names(target.sequence))
    return len(target.sequence), -(-atoms // F.ATOM_WINDOW) * F.ATOM_WINDOW


def plan_target(
    target: Target,
    cfg,
    options: FoldOptions,
    *,
    num_devices: int = 1,
    budget: int | None = None,
    device_kind: str = "cpu",
    plddt_latent_cfg=None,
    plddt_head_cfg=None,
) -> TargetPlan:
    """Bucket, chunk size and estimates for one target (no weights needed).

    ``chunk`` is the number of samples per call over all devices: the per-device batch allowed by
    the memory budget (and ``options.batch_size``), times ``num_devices``, at most
    ``num_samples`` rounded up to a multiple of ``num_devices``.
    """
    try:
        check_target(target)
    except TargetError as exc:
        return TargetPlan(target.name, len(target.sequence), 0, 0, 0, options.num_samples, 0, 0, 0.0, str(exc))
    m, n = _sizes(target)
    mb = F.bucket_size(m, options.token_buckets)
    nb = F.atom_bucket_size(n, mb)
    samples = options.num_samples
    if cfg is None:  # an opaque callable: no estimate, one chunk
        chunk = min(samples, options.batch_size or samples)
        chunk = -(-chunk // num_devices) * num_devices
        return TargetPlan(target.name, m, n, mb, nb, samples, chunk, 0, float("nan"))
    plddt = options.plddt
    est = estimate_memory(cfg, mb, nb, 1, plddt=plddt, plddt_latent_cfg=plddt_latent_cfg, plddt_head_cfg=plddt_head_cfg,
                          precision=options.precision, widen_bf16_kernels=device_kind == "cpu")
    per_dev = est.max_batch(budget) if budget is not None else samples
    if options.batch_size is not None:
        per_dev = min(per_dev, -(-options.batch_size // num_devices))
    per_dev = min(per_dev, -(-samples // num_devices))
    chunk = per_dev * num_devices
    flops = forward_flops(cfg, mb, nb) * options.sampler_config().num_steps * samples
    if plddt:
        flops += forward_flops(plddt_latent_cfg or cfg, mb, nb) * samples
    seconds = flops / (device_throughput(device_kind) * num_devices)
    at = dataclasses.replace(est, batch=max(per_dev, 1))
    mem = at.total
    phase_bytes = tuple((p.name, p.total(at.batch)) for p in est.phases)
    error = None
    if chunk == 0:
        worst = max(est.phases, key=lambda p: p.total(1))
        error = (
            f"{target.name}: {m} residues need about {est.total / 1e9:.1f} GB for one sample (phase {worst.name}), "
            f"above the memory budget of {budget / 1e9:.1f} GB per device (raise --max-memory-gb, use "
            f"--precision bfloat16 or a larger device)"
        )
    return TargetPlan(target.name, m, n, mb, nb, samples, chunk, mem, seconds, error, phase_bytes)


def memory_budget(options: FoldOptions, devices: Sequence[Any] | None = None) -> int:
    """Per-device budget in bytes: ``--max-memory-gb`` when given, else :func:`default_memory_budget`."""
    return int(options.max_memory_gb * 1e9) if options.max_memory_gb else default_memory_budget(devices)


def plan(
    sequences: Any,
    model: Any = DEFAULT_MODEL,
    options: FoldOptions | None = None,
    *,
    devices: Sequence[Any] | None = None,
) -> list[TargetPlan]:
    """Per-target plans (bucket, chunking, memory, time) without loading any weights.

    ``model`` as in :func:`simplefold.predict.loading.load_model`; only its configuration is read.
    """
    import jax

    options = options or FoldOptions()
    devices = list(devices or jax.local_devices())
    cfg = model_config(model)
    budget = memory_budget(options, devices)
    latent_cfg = plddt_latent_config(model, cfg) if options.plddt else None
    head_cfg = plddt_head_config(model, cfg) if options.plddt else None
    kind = getattr(devices[0], "device_kind", devices[0].platform) if devices[0].platform != "cpu" else "cpu"
    return [
        plan_target(t, cfg, options, num_devices=len(devices), budget=budget, device_kind=kind,
                    plddt_latent_cfg=latent_cfg, plddt_head_cfg=head_cfg)
        for t in as_targets(sequences)
    ]


def format_plan(plans: Sequence[TargetPlan], budget: int | None = None) -> str:
    """The ``--dry-run`` table (plain text, one row per target and a total).

    ``mem GB`` is the largest phase (what must fit ``budget``); the ``esm``, ``sample`` and
    ``plddt`` columns are each phase's estimate ("-" for a phase the run does not have).
    """
    head = (f"{'target':<24} {'len':>5} {'atoms':>6} {'bucket':>11} {'samples':>7} {'chunk':>5} {'calls':>5} "
            f"{'esm GB':>7} {'sample GB':>9} {'plddt GB':>8} {'mem GB':>7} {'time':>9}  note")
    rows = [head, "-" * len(head)]
    total_t = 0.0
    for p in plans:
        t = "-" if not math.isfinite(p.seconds) else _fmt_seconds(p.seconds)
        if math.isfinite(p.seconds) and not p.error:
            total_t += p.seconds
        bucket = f"{p.bucket_tokens}/{p.bucket_atoms}" if p.bucket_tokens else "-"
        note = "FAILS: " + p.error if p.error else ""  # the real run's message (file:line for bad records)
        ph = dict(p.phase_bytes)
        esm_, smp, pl = (f"{ph[k] / 1e9:.2f}" if k in ph else "-" for k in ("esm", "sampling", "plddt"))
        rows.append(
            f"{p.name[:24]:<24} {p.length:>5} {p.num_atoms:>6} {bucket:>11} {p.num_samples:>7} {p.chunk:>5} "
            f"{p.num_chunks:>5} {esm_:>7} {smp:>9} {pl:>8} {p.memory_bytes / 1e9:>7.2f} {t:>9}  {note}"
        )
    n_bad = sum(1 for p in plans if p.error)
    rows.append("-" * len(head))
    if budget is not None:
        rows.append(f"memory budget {budget / 1e9:.2f} GB per device; phases run one after another, so a target "
                    "needs its largest phase (mem GB)")
    if n_bad == len(plans):
        rows.append(f"{len(plans)} targets, all would fail: nothing would run")
    else:
        rows.append(f"{len(plans)} targets, {n_bad} would fail; estimated total time {_fmt_seconds(total_t)} "
                    "(rough: excludes compilation and ESM)")
    return "\n".join(rows)


def _fmt_seconds(s: float) -> str:
    if s < 120:
        return f"{s:.1f}s"
    if s < 7200:
        return f"{s / 60:.1f}min"
    return f"{s / 3600:.1f}h"


def bucket_key(target: Target, options: FoldOptions) -> int:
    """The residue bucket of a target (targets are processed bucket by bucket, shortest first)."""
    return F.bucket_size(max(len(target.sequence), 1), options.token_buckets)
