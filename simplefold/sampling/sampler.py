"""Euler–Maruyama sampler of SimpleFold (the official ``EMSampler``) as one jitted ``lax.scan``.

One step from t to t' (dt = t' − t), for every sample independently:

1. centre the state on the mean of its real atoms (``atom_pad_mask``): y_c;
2. v = velocity(y_c, t); score s = (t·v − y_c)/(1 − t);
3. w = (1 − t)/(t + 0.01), or 0 once t ≥ ``w_cutoff``;
4. y ← y_c + (v + w·s)·dt + sqrt(2·dt·w·τ)·ε, ε ~ N(0, I) over all atom slots.

The last state (t = 1) is returned as is, in model units (Å/16) and *not* re-centred, exactly as
the official sampler returns it; :func:`postprocess` turns it into centred Å.

Samples: the batch axis of the state is the sample axis ``S``. Features are the *batch-1* dict
of one protein and are shared by all samples: the network broadcasts them over the S samples, so
nothing that depends only on the features (e.g. ``esm_s`` and its projection) is stored S times.

Randomness: with ``key`` the initial noise and per-step ε of sample k come from that sample's own
key only (see :func:`sample_keys`), so a sample is the same whether it runs alone or in a chunk;
the draws for atom slot n do not depend on how many padding slots follow it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from simplefold.constants import COORD_SCALE, NUM_STEPS, T_START, TAU, W_CUTOFF
from simplefold.model.config import ATTENTION_KEY_BLOCK
from simplefold.model.precision import PRECISIONS, check_precision
from simplefold.reproducible import precision_jit
from simplefold.sampling import flow

logger = logging.getLogger(__name__)

# η in w(t) = (1 − t)/(t + η) (paper: w_paper = 2(1 − t)/(t + η); the code's w is w_paper / 2).
_W_ETA = 0.01


@dataclasses.dataclass(frozen=True)
class SamplerConfig:
    """Sampler settings; the single place where their defaults live.

    Attributes:
      num_steps: Euler–Maruyama steps (official CLI: 500).
      tau: noise scale τ of the stochastic term; 0 gives the deterministic (ODE-like) sampler,
        which still contains the w·score drift. The official code has four defaults: 0.3
        (training YAML / ``EMSampler``), 0.01 (benchmark eval, README example, paper folding
        numbers), 0.1 (``simplefold`` CLI) and 0.05 (notebook). We use the CLI's 0.1 so that
        ``simplefold predict`` matches the official command line; pass ``tau=0.01`` to reproduce
        the paper's folding benchmarks.
      t_start: first grid time (t = 0 would make the score's t·v term vanish; the official 1e-4).
      w_cutoff: w(t) is 0 for t ≥ w_cutoff (the last steps are noise- and score-free).
      log_timesteps: log-spaced grid (always on in the official CLI); else uniform.
    """

    num_steps: int = NUM_STEPS
    tau: float = TAU
    t_start: float = T_START
    w_cutoff: float = W_CUTOFF
    log_timesteps: bool = True

    def __post_init__(self) -> None:
        if self.num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {self.num_steps}")
        if self.tau < 0:
            raise ValueError(f"tau must be >= 0, got {self.tau}")
        if not 0.0 <= self.t_start < 1.0:
            raise ValueError(f"t_start must be in [0, 1), got {self.t_start}")

    def time_grid(self) -> np.ndarray:
        """``(num_steps + 1,)`` float32 grid from ``t_start`` to 1."""
        if self.log_timesteps:
            return flow.log_time_grid(self.num_steps, self.t_start)
        return flow.linear_time_grid(self.num_steps, self.t_start)

    def noise_gains(self) -> np.ndarray:
        """Per-step factor by which the update multiplies the noise left in the state, ``(num_steps,)``.

        For a network that denoises exactly, the noise part n of the centred state obeys
        n ← g·n with g = 1 − dt/(1−t) − w·dt/(1−t)² (velocity term plus the explicit w·score term).
        The explicit step is stable only where |g| ≤ 1. On the official log grid the first step
        (t = 1e-4, w ≈ 99) has g = 1 − 99.0·t_1 − …, i.e. g ≈ −36 for 10 steps, −7.9 for 50, −3.5 for
        100 and −1.3 for 200: the step *amplifies* the initial noise (with a sign flip) far beyond
        anything the network saw in training, and few-step samples explode. |g| ≤ 1 holds from 230
        steps on (see :func:`min_stable_steps`).
        """
        g = self.time_grid().astype(np.float64)
        t, dt = g[:-1], np.diff(g)
        w = np.where(t >= self.w_cutoff, 0.0, (1.0 - t) / (t + _W_ETA))
        return 1.0 - dt / (1.0 - t) - w * dt / (1.0 - t) ** 2

    def max_noise_gain(self) -> float:
        """max |g| of :meth:`noise_gains`; > 1 means the grid is numerically unstable."""
        return float(np.max(np.abs(self.noise_gains())))

    @property
    def stable(self) -> bool:
        """True when no step amplifies the noise (:meth:`max_noise_gain` ≤ 1)."""
        return self.max_noise_gain() <= 1.0

    def stability_warning(self) -> str | None:
        """A one-line explanation when the settings are unstable (None when they are stable)."""
        gain = self.max_noise_gain()
        if gain <= 1.0:
            return None
        grid = "log-spaced" if self.log_timesteps else "uniform"
        return (
            f"{self.num_steps} sampler steps are numerically unstable with the official Euler–Maruyama "
            f"update on the {grid} grid: a step multiplies the remaining noise by up to {gain:.1f}× "
            f"(stable from {min_stable_steps(self)} steps); samples may explode or lose their chemistry"
        )


def min_stable_steps(config: SamplerConfig | None = None, limit: int = 100_000) -> int:
    """Smallest ``num_steps`` for which ``config`` (other settings kept) is :attr:`SamplerConfig.stable`."""
    base = config or SamplerConfig()
    lo, hi = 1, 1
    while not dataclasses.replace(base, num_steps=hi).stable:
        lo, hi = hi, hi * 2
        if hi > limit:
            raise ValueError(f"no stable step count up to {limit}")
    while lo < hi:  # stability is monotone in the step count for the official grids
        mid = (lo + hi) // 2
        if dataclasses.replace(base, num_steps=mid).stable:
            hi = mid
        else:
            lo = mid + 1
    return hi


# ----------------------------------------------------------------------------- velocity adapters


@dataclasses.dataclass(frozen=True)
class VelocityModel:
    """A pure velocity function and its parameters: the form the jitted sampler consumes.

    ``fn(params, y, t, ctx) -> v`` with ``y`` ``(S, N, 3)`` (model units, centred), ``t`` ``(S,)``;
    returns ``(S, N, 3)``. ``ctx`` is ``encode(params, feats)`` when ``encode`` is given — the
    work that depends on the protein only, done once before the steps — else the batch-1 feature
    dict itself. ``fn`` and ``encode`` must be hashable and are static arguments of ``jax.jit``
    (use the same objects across calls to reuse the compilation); ``params`` is any pytree of
    arrays and is traced.
    """

    fn: Callable[[Any, jax.Array, jax.Array, Any], jax.Array]
    params: Any = None
    encode: Callable[[Any, Mapping[str, jax.Array]], Any] | None = None
    #: "float32" compiles for bit-identical samples across chunks/buckets; "bfloat16" (mixed
    #: networks) for the CPU's bf16 units (see ``simplefold.reproducible.precision_jit``)
    precision: str = "float32"


def _predicted_velocity(out: Any) -> jax.Array:
    return out["predict_velocity"] if isinstance(out, Mapping) else out


@dataclasses.dataclass(frozen=True)
class _NNXVelocity:
    """Velocity of an ``nnx.Module`` given as (graphdef [static], state [traced]).

    With ``split`` the module has ``encode(feats)`` / ``denoise(ctx, y, t)`` (``FoldingDiT``) and
    this is the ``denoise`` half; otherwise the module is called as ``module(y, t, feats)``.
    """

    graphdef: Any
    split: bool = False

    def __call__(self, state, y, t, ctx):
        from flax import nnx

        module = nnx.merge(self.graphdef, state)
        return _predicted_velocity(module.denoise(ctx, y, t) if self.split else module(y, t, ctx))


@dataclasses.dataclass(frozen=True)
class _NNXEncode:
    """The ``encode(feats)`` half of a split module (see :class:`_NNXVelocity`)."""

    graphdef: Any

    def __call__(self, state, feats):
        from flax import nnx

        return nnx.merge(self.graphdef, state).encode(feats)


@dataclasses.dataclass(frozen=True)
class _CallableVelocity:
    """Velocity of a plain callable ``model(noised_pos, t, feats)``; weights are closed over."""

    model: Callable[..., Any]

    def __call__(self, params, y, t, feats):
        del params
        return _predicted_velocity(self.model(y, t, feats))


def as_velocity_model(model: Any) -> VelocityModel:
    """Adapt a network to :class:`VelocityModel`.

    The network is called as ``model(noised_pos (S, N, 3), t (S,), feats)`` with batch-1 ``feats``
    (which it must broadcast over the S samples, as ``FoldingDiT`` does) and returns the velocity
    or a dict with ``"predict_velocity"``. Accepted: a :class:`VelocityModel` (returned as is); an
    object with ``graphdef``/``state`` attributes (``simplefold.model.folding.FoldingModel``); an
    ``nnx.Module`` (or an object whose ``.module`` is one); any other callable (its weights are
    then closed over, i.e. compiled in as constants — fine for small test functions). For modules
    the weights are traced arguments of the jitted sampler.
    """
    if isinstance(model, VelocityModel):
        return model
    from flax import nnx

    if isinstance(getattr(model, "graphdef", None), nnx.GraphDef) and hasattr(model, "state"):
        return _nnx_velocity(model.graphdef, model.state, getattr(model, "module", None))
    module = model if isinstance(model, nnx.Module) else getattr(model, "module", None)
    if isinstance(module, nnx.Module):
        graphdef, state = nnx.split(module)
        return _nnx_velocity(graphdef, state, module)
    if callable(model):
        return VelocityModel(_CallableVelocity(model))
    raise TypeError(f"cannot use {type(model).__name__} as a velocity model: not callable")


def _nnx_velocity(graphdef: Any, state: Any, module: Any) -> VelocityModel:
    # modules with encode/denoise (FoldingDiT) do their protein-only work once, before the steps
    split = callable(getattr(module, "encode", None)) and callable(getattr(module, "denoise", None))
    precision = getattr(getattr(module, "config", None), "dtype", "float32")
    return VelocityModel(_NNXVelocity(graphdef, split), state, _NNXEncode(graphdef) if split else None, precision)


# ----------------------------------------------------------------------------- randomness


def _target_code(target_name: str) -> int:
    """Stable 31-bit code of a target name (Python's ``hash`` is salted per process)."""
    return int.from_bytes(hashlib.sha256(target_name.encode("utf-8")).digest()[:4], "little") & 0x7FFFFFFF


def sample_keys(seed: int, target_name: str, num_samples: int, start: int = 0) -> jax.Array:
    """Per-sample PRNG keys: key_k = fold_in(fold_in(key(seed), code(target_name)), k).

    Sample k's randomness depends only on (seed, target_name, k), so samples can be produced in
    any chunking or order. ``start`` offsets k (chunk [start, start + num_samples)).

    Returns:
      typed key array ``(num_samples,)``.
    """
    base = jax.random.fold_in(jax.random.key(seed), _target_code(target_name))
    return jax.vmap(lambda k: jax.random.fold_in(base, k))(jnp.arange(start, start + num_samples, dtype=jnp.uint32))


def _noise_keys(key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(initial-noise key, per-step key) of one sample."""
    k = jax.random.split(key)
    return k[0], k[1]


def draw_initial_noise(keys: jax.Array, num_atoms: int) -> jax.Array:
    """y_0 ~ N(0, I) ``(S, num_atoms, 3)`` from per-sample keys ``(S,)`` (model units)."""
    return jax.vmap(lambda k: jax.random.normal(_noise_keys(k)[0], (num_atoms, 3), jnp.float32))(keys)


def draw_step_noise(keys: jax.Array, step: jax.Array | int, num_atoms: int) -> jax.Array:
    """ε of step ``step`` ``(S, num_atoms, 3)`` from per-sample keys ``(S,)``."""
    return jax.vmap(
        lambda k: jax.random.normal(jax.random.fold_in(_noise_keys(k)[1], step), (num_atoms, 3), jnp.float32)
    )(keys)


# ----------------------------------------------------------------------------- the step


def diffusion_coefficient(t: jax.Array, w_cutoff: float | jax.Array) -> jax.Array:
    """w(t) = (1 − t)/(t + 0.01), set to 0 where t ≥ w_cutoff. Elementwise on any shape."""
    return jnp.where(t >= w_cutoff, jnp.zeros_like(t), (1.0 - t) / (t + _W_ETA))


def em_update(
    y_centered: jax.Array,
    velocity: jax.Array,
    t: jax.Array,
    t_next: jax.Array,
    eps: jax.Array,
    tau: float | jax.Array,
    w_cutoff: float | jax.Array,
) -> jax.Array:
    """Arithmetic of one Euler–Maruyama step from the *centred* state (float32, op order of the reference).

    Args:
      y_centered: ``(S, N, 3)`` state after centring (the network input).
      velocity: ``(S, N, 3)`` network velocity at (y_centered, t).
      t, t_next: scalars, t < t_next ≤ 1, t < 1.
      eps: ``(S, N, 3)`` standard normal draw.
      tau: noise scale τ ≥ 0.
      w_cutoff: see :func:`diffusion_coefficient`.

    Returns:
      ``(S, N, 3)`` next (un-centred) state.
    """
    t = jnp.asarray(t, jnp.float32)
    t_next = jnp.asarray(t_next, jnp.float32)
    dt = t_next - t
    w = diffusion_coefficient(t, w_cutoff)
    score = flow.score_from_velocity(velocity, y_centered, t)
    # w = 0 must switch the score off even where it is not finite.
    drift = velocity + jnp.where(w > 0, w * score, jnp.zeros_like(score))
    noise_scale = jnp.sqrt(2.0 * dt * w * jnp.asarray(tau, jnp.float32))
    return y_centered + drift * dt + noise_scale * eps


def _center_samples(y: jax.Array, pad_mask: jax.Array) -> jax.Array:
    """Centre every sample of ``y`` ``(S, N, 3)`` on the atoms with ``pad_mask`` ``(N,)``."""
    return flow.center(y, jnp.broadcast_to(pad_mask, y.shape[:2]))


def _step_fn(velocity_fn, ctx, pad_mask, noise, tau, w_cutoff, replay):
    """One Euler–Maruyama step ``(y, params), (t, t_next, step input) -> new y`` (shared by both scans)."""

    def step(y, p, t, t_next, step_in):
        num_samples, num_atoms = y.shape[0], y.shape[1]
        eps = step_in if replay else draw_step_noise(noise, step_in, num_atoms)
        y_c = _center_samples(y, pad_mask)
        v = velocity_fn(p, y_c, jnp.full((num_samples,), t, jnp.float32), ctx)
        return em_update(y_c, v.astype(jnp.float32), t, t_next, eps, tau, w_cutoff)

    return step


def _sample_scan_impl(velocity_fn, encode_fn, params, feats, y0, noise, time_grid, tau, w_cutoff, *, replay):
    """Whole trajectory as one scan. ``noise`` is ε ``(T, S, N, 3)`` if ``replay`` else keys ``(S,)``."""
    pad_mask = feats["atom_pad_mask"][0]
    # protein-only work (atom features, ESM projection, RoPE tables, masks) once, outside the loop
    ctx = feats if encode_fn is None else encode_fn(params, feats)
    one_step = _step_fn(velocity_fn, ctx, pad_mask, noise, tau, w_cutoff, replay)

    def step(carry, xs):
        # The weights ride in the carry (unchanged) so that NNX modules are rebuilt from values
        # of the loop body's own trace level rather than closed-over outer tracers.
        y, p = carry
        return (one_step(y, p, *xs), p), None

    step_inputs = noise if replay else jnp.arange(time_grid.shape[0] - 1, dtype=jnp.uint32)
    (y, _), _ = jax.lax.scan(step, (y0, params), (time_grid[:-1], time_grid[1:], step_inputs))
    return y


def _segment_scan_impl(velocity_fn, encode_fn, params, feats, y, noise, t_from, t_to, step_inputs, valid, tau,
                       w_cutoff, *, replay):
    """Steps ``t_from[i] -> t_to[i]`` of a trajectory (one segment, for progress reports).

    ``step_inputs`` are the steps' ε (replay) or global step indices; steps with ``valid`` False
    (padding of the last segment, so that every segment has one compiled shape) leave ``y`` as is.
    Running the segments one after another gives exactly what :func:`_sample_scan_impl` gives.
    """
    pad_mask = feats["atom_pad_mask"][0]
    ctx = feats if encode_fn is None else encode_fn(params, feats)
    one_step = _step_fn(velocity_fn, ctx, pad_mask, noise, tau, w_cutoff, replay)

    def step(carry, xs):
        y, p = carry
        t, t_next, step_in, ok = xs
        return (jnp.where(ok, one_step(y, p, t, t_next, step_in), y), p), None

    (y, _), _ = jax.lax.scan(step, (y, params), (t_from, t_to, step_inputs, valid))
    return y


#: Progress reports per trajectory when ``sample(on_step=...)`` is given (the trajectory runs as
#: this many equal segments; more would add dispatch and re-encoding overhead per segment).
PROGRESS_SEGMENTS = 20


_SCAN_STATIC = ("velocity_fn", "encode_fn", "replay")
_SAMPLE_SCAN = {p: precision_jit(_sample_scan_impl, p, static_argnames=_SCAN_STATIC) for p in PRECISIONS}
_SEGMENT_SCAN = {p: precision_jit(_segment_scan_impl, p, static_argnames=_SCAN_STATIC) for p in PRECISIONS}


def _sample_scan(vm: VelocityModel):
    """The compiled trajectory for ``vm``'s precision."""
    return _SAMPLE_SCAN[check_precision(vm.precision)]


def _run_trajectory(vm: VelocityModel, f1, y0, noise, grid, tau_a, cut_a, *, replay: bool,
                    on_step: Callable[[int, int], None] | None) -> jax.Array:
    """The whole trajectory: one scan, or with ``on_step`` :data:`PROGRESS_SEGMENTS` segments with
    ``on_step(steps done, total steps)`` after each (same result, bit for bit)."""
    if on_step is None:
        return _sample_scan(vm)(vm.fn, vm.encode, vm.params, f1, y0, noise, grid, tau_a, cut_a, replay=replay)
    total = int(grid.shape[0]) - 1
    seg = -(-total // min(PROGRESS_SEGMENTS, total))
    padded = -(-total // seg) * seg
    extra = padded - total
    t_from = jnp.concatenate([grid[:-1], jnp.full((extra,), grid[-1])])
    t_to = jnp.concatenate([grid[1:], jnp.full((extra,), grid[-1])])
    valid = jnp.arange(padded) < total
    if replay:
        inputs = jnp.concatenate([noise, jnp.zeros((extra, *noise.shape[1:]), noise.dtype)])
        noise_arg = None
    else:
        inputs = jnp.arange(padded, dtype=jnp.uint32)
        noise_arg = noise
    fn = _SEGMENT_SCAN[check_precision(vm.precision)]
    y = y0
    for lo in range(0, padded, seg):
        y = fn(vm.fn, vm.encode, vm.params, f1, y, noise_arg, t_from[lo:lo + seg], t_to[lo:lo + seg],
               inputs[lo:lo + seg], valid[lo:lo + seg], tau_a, cut_a, replay=replay)
        jax.block_until_ready(y)
        on_step(min(lo + seg, total), total)
    return y


# ----------------------------------------------------------------------------- public entry points


def _batch1_features(feats: Mapping[str, Any]) -> dict[str, jax.Array]:
    """Array entries of ``feats`` (non-arrays such as ``record`` are dropped), checked to be batch-1."""
    out = {}
    for name, value in feats.items():
        if not isinstance(value, (np.ndarray, jax.Array)):
            continue
        if value.ndim == 0 or value.shape[0] != 1:
            raise ValueError(
                f"sampler features must have batch size 1 (one protein shared by all samples); "
                f"feature {name!r} has shape {tuple(value.shape)} — pass feats[k][:1]"
            )
        out[name] = jnp.asarray(value)
    if "atom_pad_mask" not in out:
        raise ValueError("sampler features need 'atom_pad_mask' (B=1, N)")
    return out


def _is_key_array(key: jax.Array) -> bool:
    """True for a batch of keys (typed ``(S,)`` or raw ``(S, 2)``), False for a single key."""
    single_ndim = 0 if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) else 1
    return key.ndim > single_ndim


def _per_sample_keys(key: jax.Array, num_samples: int) -> jax.Array:
    """A single key → (num_samples,) keys fold_in(key, k); an array of keys is used as is."""
    if not jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.wrap_key_data(key)
    if key.ndim == 0:
        return jax.vmap(lambda k: jax.random.fold_in(key, k))(jnp.arange(num_samples, dtype=jnp.uint32))
    if key.shape != (num_samples,):
        raise ValueError(f"expected {num_samples} per-sample keys, got key array of shape {key.shape}")
    return key


def sample(
    model: Any,
    feats: Mapping[str, Any],
    num_steps: int | None = None,
    tau: float | None = None,
    key: jax.Array | None = None,
    initial_noise: jax.Array | np.ndarray | None = None,
    eps: jax.Array | np.ndarray | None = None,
    *,
    num_samples: int | None = None,
    t_start: float | None = None,
    w_cutoff: float | None = None,
    log_timesteps: bool | None = None,
    chunk_size: int | None = None,
    config: SamplerConfig | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> jax.Array:
    """Draw structures with the official Euler–Maruyama sampler.

    Settings left as ``None`` come from ``config`` (default :class:`SamplerConfig`).

    Args:
      model: the network (see :func:`as_velocity_model`), called as ``model(noised_pos (S, N, 3),
        t (S,), feats) -> {"predict_velocity": (S, N, 3), ...}`` with the batch-1 ``feats``. A model
        with a ``prepare(feats)`` method (``FoldingModel``) has its features prepared once.
      feats: feature dict of ONE protein, every array with leading batch 1; must contain
        ``atom_pad_mask`` ``(1, N)``. Non-array entries are ignored.
      num_steps, tau, t_start, w_cutoff, log_timesteps: see :class:`SamplerConfig`.
      key: randomness when ``initial_noise``/``eps`` are not given: one key (sample k uses
        ``fold_in(key, k)``) or per-sample keys ``(S,)`` from :func:`sample_keys`.
      initial_noise: y_0 ``(S, N, 3)`` (model units), e.g. to replay a reference run.
      eps: per-step draws ``(num_steps, S, N, 3)`` (replay); otherwise drawn from the keys.
      num_samples: S when it is not implied by ``initial_noise``, ``eps`` or a key array (default 1).
      chunk_size: run at most this many samples at once (memory); results are identical to one
        big batch because every sample has its own key. Needs ``key`` (no replay arrays).
      config: base :class:`SamplerConfig`.
      on_step: progress callback ``(steps done, total steps)`` of the current chunk, called
        :data:`PROGRESS_SEGMENTS` times per trajectory (the scan then runs in segments; the result is
        the same bit for bit, tested).

    Returns:
      ``(S, N, 3)`` float32 final states in model units (Å/16), not re-centred.
    """
    base = config or SamplerConfig()
    overrides = dict(num_steps=num_steps, tau=tau, t_start=t_start, w_cutoff=w_cutoff, log_timesteps=log_timesteps)
    cfg = dataclasses.replace(base, **{k: v for k, v in overrides.items() if v is not None})
    prepare = getattr(model, "prepare", None)  # FoldingModel: select/convert features once, on device
    f1 = _batch1_features(prepare(feats) if callable(prepare) else feats)
    n_atoms = f1["atom_pad_mask"].shape[1]

    if initial_noise is not None:
        initial_noise = jnp.asarray(initial_noise, jnp.float32)
    if eps is not None:
        eps = jnp.asarray(eps, jnp.float32)
    s = num_samples
    for arr, axis in ((initial_noise, 0), (eps, 1)):
        if arr is not None:
            if s is not None and arr.shape[axis] != s:
                raise ValueError(f"inconsistent number of samples: {s} vs array of shape {arr.shape}")
            s = arr.shape[axis]
    if s is None and key is not None and _is_key_array(key):
        s = key.shape[0]
    s = 1 if s is None else s

    if initial_noise is not None and initial_noise.shape != (s, n_atoms, 3):
        raise ValueError(f"initial_noise must have shape {(s, n_atoms, 3)}, got {initial_noise.shape}")
    if eps is not None and eps.shape != (cfg.num_steps, s, n_atoms, 3):
        raise ValueError(f"eps must have shape {(cfg.num_steps, s, n_atoms, 3)}, got {eps.shape}")
    if key is None and (initial_noise is None or (eps is None and cfg.tau > 0)):
        raise ValueError("sample() needs key=, or initial_noise= and (eps= or tau=0)")

    vm = as_velocity_model(model)
    grid = jnp.asarray(cfg.time_grid())
    tau_a = jnp.float32(cfg.tau)
    cut_a = jnp.float32(cfg.w_cutoff)

    keys = None
    if key is not None:
        keys = _per_sample_keys(key, s)
    elif eps is None:  # tau = 0 with given initial noise: ε is multiplied by 0, any key will do
        keys = _per_sample_keys(jax.random.key(0), s)

    if chunk_size is not None and s > chunk_size:
        if initial_noise is not None or eps is not None:
            raise ValueError("chunk_size works with key= only (replay arrays are not chunked)")
        logger.debug("sampling %d samples in chunks of %d", s, chunk_size)
        chunks = []
        for lo in range(0, s, chunk_size):
            kc = keys[lo : lo + chunk_size]
            n_real = kc.shape[0]
            if n_real < chunk_size:  # pad the last chunk so every chunk reuses one compilation
                kc = jnp.concatenate([kc, jnp.broadcast_to(kc[-1:], (chunk_size - n_real,))])
            y0 = draw_initial_noise(kc, n_atoms)
            chunks.append(_run_trajectory(vm, f1, y0, kc, grid, tau_a, cut_a, replay=False, on_step=on_step)[:n_real])
        return jnp.concatenate(chunks, axis=0)

    y0 = initial_noise if initial_noise is not None else draw_initial_noise(keys, n_atoms)
    if eps is not None:
        return _run_trajectory(vm, f1, y0, eps, grid, tau_a, cut_a, replay=True, on_step=on_step)
    return _run_trajectory(vm, f1, y0, keys, grid, tau_a, cut_a, replay=False, on_step=on_step)


def postprocess(coords: jax.Array, atom_pad_mask: jax.Array) -> jax.Array:
    """Sampler output → Å: centre on the real atoms and multiply by 16.

    Args:
      coords: ``(S, N, 3)`` model units.
      atom_pad_mask: ``(S, N)``, ``(1, N)`` or ``(N,)``.

    Returns:
      ``(S, N, 3)`` Å, real-atom centroid at the origin.
    """
    coords = jnp.asarray(coords, jnp.float32)
    mask = jnp.broadcast_to(jnp.asarray(atom_pad_mask), coords.shape[:2])
    return flow.center(coords, mask) * COORD_SCALE


# ----------------------------------------------------------------------------- memory


def estimate_sample_memory(config: Any, num_atoms: int, num_tokens: int, num_samples: int, *, param_bytes: int = 0) -> int:
    """Rough peak device memory (bytes) of :func:`sample` for one protein, float32.

    Model: ``param_bytes`` (the weights; pass ``sum(x.nbytes for x in leaves(state))``) + shared
    feature buffers (``esm_s`` M·E·C and two atom-feature tables N·(atom_feat_dim + D)) + per
    sample the live activations of one network call:

    * per atom slot: Fourier features (fourier_dim) + 4·D (atom stream in trunk width) +
      2·H_a·n_keys (local attention logits/probabilities) + 2·atom SwiGLU hidden;
    * per token: 8·D + 2·trunk SwiGLU hidden + 2·H·M (full trunk attention) + D per block of
      ``ATTENTION_KEY_BLOCK`` keys (partial value products of the padding-invariant attention).

    The scan keeps only the state between steps, so memory does not grow with ``num_steps``.
    Against XLA's own buffer plan for the 100M config on CPU (``memory_stats`` in
    ``benchmarks/sample.py``) this overestimates the per-sample part ≈ 3× (N = 1088, M = 128:
    33 MiB vs 10.7 MiB per extra sample), i.e. it errs on the safe side; accelerators differ.

    Args:
      config: a ``FoldingConfig`` (reads hidden_size, num_heads, atom_hidden_size,
        atom_num_heads, n_keys, esm_num_layers, esm_dim, fourier_dim, atom_feat_dim,
        trunk_mlp_hidden, atom_mlp_hidden, condition).
      num_atoms: N atom slots (after padding); num_tokens: M residues; num_samples: S.
      param_bytes: bytes of the weights, added as is.
    """
    c = config
    n, m = num_atoms, num_tokens
    d = c.hidden_size
    per_atom = c.fourier_dim + 4 * d + 2 * c.atom_num_heads * c.n_keys + 2 * c.atom_mlp_hidden
    per_token = 8 * d + 2 * c.trunk_mlp_hidden + 2 * c.num_heads * m + d * -(-m // ATTENTION_KEY_BLOCK)
    esm = m * c.esm_num_layers * c.esm_dim if getattr(c, "condition", "esm") == "esm" else 0
    shared = esm + 2 * n * (c.atom_feat_dim + d)
    return int(param_bytes + 4 * shared + 4 * num_samples * (n * per_atom + m * per_token))


def max_samples_per_chunk(
    budget_bytes: int, config: Any, num_atoms: int, num_tokens: int, *, param_bytes: int = 0
) -> int:
    """Largest S with :func:`estimate_sample_memory` ≤ ``budget_bytes`` (at least 1)."""
    fixed = estimate_sample_memory(config, num_atoms, num_tokens, 0, param_bytes=param_bytes)
    per = estimate_sample_memory(config, num_atoms, num_tokens, 1, param_bytes=param_bytes) - fixed
    return max(1, (budget_bytes - fixed) // max(per, 1))


def memory_stats(model: Any, feats: Mapping[str, Any], num_samples: int, num_steps: int = 2) -> dict[str, int]:
    """XLA's buffer plan for :func:`sample` (compiles, does not run): bytes of arguments, temporaries, output.

    ``model`` may hold abstract weights (``nnx.eval_shape``), so this also sizes models that would
    not fit. Returns ``{"argument", "temp", "output", "total"}`` (``total`` = sum; the backend may
    not report everything, e.g. for host callbacks).
    """
    prepare = getattr(model, "prepare", None)
    f1 = _batch1_features(prepare(feats) if callable(prepare) else feats)
    vm = as_velocity_model(model)
    n = f1["atom_pad_mask"].shape[1]
    keys = sample_keys(0, "memory", num_samples)
    grid = jnp.asarray(SamplerConfig(num_steps=num_steps).time_grid())
    y0 = jax.ShapeDtypeStruct((num_samples, n, 3), jnp.float32)
    lowered = _sample_scan(vm).lower(vm.fn, vm.encode, vm.params, f1, y0, keys, grid, jnp.float32(0), jnp.float32(1), replay=False)
    stats = lowered.compile().memory_analysis()
    out = {
        "argument": int(stats.argument_size_in_bytes),
        "temp": int(stats.temp_size_in_bytes),
        "output": int(stats.output_size_in_bytes),
    }
    out["total"] = sum(out.values())
    return out
