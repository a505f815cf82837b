#!/usr/bin/env python
"""One prepared side-by-side run: the official PyTorch SimpleFold vs simplefold (JAX), on one GPU.

Run it through ``benchmarks/gpu_side_by_side.sh OUT_DIR [--smoke] [options]`` (which installs the
carried wheels and sets PYTHONPATH), or directly::

    python benchmarks/gpu_side_by_side.py OUT_DIR [--smoke] [--no-official] [--budget-s S] ...

It writes ``OUT_DIR/gpu_side_by_side.json`` (every measurement), ``OUT_DIR/gpu_side_by_side.md``
(the tables) and ``OUT_DIR/gpu_side_by_side.log`` (the workers' output), rewritten after every
phase, so a run stopped early still leaves what it measured.

What it measures (full run; ``--smoke`` shrinks every size, see below)

1. **Forward**, FoldingDiT-100M (``foldingdit_100M.yaml`` as released: esm2_3B features,
   37 x 2560), float32 and bfloat16, L = 128, 256, 512, 1024 residues, B = 1 and 8 samples:
   ms per call, median of ``--reps`` timed calls after ``--warmup`` untimed ones, each call
   synchronised (``torch.cuda.synchronize`` / ``jax.block_until_ready``). Official bf16 is
   ``torch.autocast(bfloat16)``; ours is ``precision="bfloat16"`` (bf16 matmul inputs, f32
   accumulation, norms and outputs). Each side is called the way it is used: the official model
   with the features repeated B times (as its inference does), ours with the batch-1 features
   put on the device once (``model.prepare``) and broadcast over the B samples. Float32 means
   float32 on both sides: torch's TF32 switches are off and ours runs with
   ``jax_default_matmul_precision="highest"`` (``--f32-matmul tf32`` switches both to TF32).
2. **Parity** on the GPU in float32, every forward case: max |ours - official| / (1e-4 +
   1e-4 |official|) for ``predict_velocity`` and ``latent`` (<= 1 passes). The bfloat16 cases
   report the relative L2 error of each side against the official float32 output.
3. **Whole 500-step sample** (tau = 0.01, one sample), L = 128, 256, 512: the official
   ``EMSampler.sample`` Python loop (its tqdm bar switched off; a 5-step run first as warm-up) vs
   ours, ``simplefold.sampling.sampler.sample`` (one jitted ``lax.scan``: the first call compiles, the
   second is timed). Seconds per sample.
4. **Peak GPU memory** per case. Official: ``torch.cuda.max_memory_allocated`` after
   ``reset_peak_memory_stats`` (weights and inputs included). Ours: JAX cannot reset its peak
   counter, so each case reports bytes live before the call (weights, features, inputs) + XLA's
   buffer plan of the call (temporaries + outputs) as ``peak_bytes``, next to the process-wide
   ``peak_bytes_in_use`` of ``memory_stats()`` (cumulative over the worker's cases).
5. **Trunk MFU**, bf16, L = 1024: ours' trunk alone (``FoldingDiT.trunk``) timed as above,
   FLOPs counted from the config (matrix products and attention: 2 per multiply-add), against
   ``--peak-tflops`` (790: the bf16 matrix rate measured on this workplace's H200). 100M at
   B = 1 and 8, and the simplefold_3B-shaped trunk at B = 1.
6. **Largest L for one sample** of a simplefold_3B-shaped model (random weights) in bf16, ours:
   L doubles from 4096 until a 2-step ``sample`` call (memory does not grow with the steps of the
   scan) fails with out-of-memory, then bisection to ``--probe-resolution`` (1024) residues; each
   probe compiles anew, so the bracket is what the phase's time allows. Weights: one random
   stream on the device (``random_module``). A probe worker that dies is restarted with the
   bracket found so far, and the L it died on counts as not fitting. XLA may use 92 % of the GPU
   (the rest is left to the CUDA libraries' own workspaces).
7. The machine (``nvidia-smi``, devices seen by torch and JAX), date and versions.

Weights: the deterministic random weights of ``simplefold.model.random_init`` (N(0, 1/fan_in)
linears, norms 1 + N(0, 0.2^2), ...; unlike the official zero-init of the adaLN layers they give
non-trivial outputs and keep a 500-step trajectory smooth), written once as a torch-format
checkpoint (``simplefold.devtools.torch_writer``, no torch needed) that the official side loads
with ``torch.load`` + ``load_state_dict(strict=True)`` and ours with
``simplefold.load_official_model``. Inputs: one random sequence per L featurised by
``simplefold.features.featurize_sequence`` (the official layout) with random ``esm_s``; the same
arrays go to both sides.

Processes: the driver (this file, no GPU use: its JAX is CPU-only) prepares the weights and
inputs in ``--work``, then runs one worker process at a time — official (torch), ours float32
(forward, parity, sample), ours bfloat16 (forward, trunk MFU), ours probe — and collects their
``@@ {json}`` lines. The official worker runs under ``--official-python`` (default
``$SIMPLEFOLD_OFFICIAL_PYTHON`` or this Python) with the official tree from ``--official-src``
(default ``$SIMPLEFOLD_OFFICIAL_SRC``, else ``<repo>/.official``). When torch, hydra/omegaconf or
the tree are missing, or with ``--no-official``, the official side is skipped and the JSON and
the table say so and why. The official sampler module imports the structure writers (ihm,
modelcif, rdkit), which it never calls; where those are missing they are replaced by
placeholders (``simplefold.devtools.official.import_official(stub_writers=True)``; listed in the
JSON).

Time budget: ``--budget-s`` (default 450 s; smoke 240) covers the whole run. Each phase gets a
share of what is left; a worker skips a case when its phase's time would not cover it (estimated
from the previous case) and says so; a worker still running at its phase's end (+30 s) is
stopped. Skipped cases are listed in the JSON and under the tables.

``--smoke``: a small official-shaped architecture (D = 64, 2 heads, trunk depth 2, atom width
32, esm2_8M-sized features), forwards at (L, B) = (32, 1) and (64, 2), 3-step samples at
L = 32, a tiny "3B" stand-in probed from L = 64 with a stand-in capacity (``--probe-limit-mib``
15, checked against ``sampler.estimate_sample_memory`` without compiling) in place of the
GPU's. It exercises every code path on a CPU in about a minute; its numbers are not benchmarks.

On the H200 (device tool; what to prepare first: ``benchmarks/gpu_carry.sh``)::

    run(command="bash benchmarks/gpu_side_by_side.sh $OUT", carry=[".official", ".whl"], timeout_s=600)
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import math
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import threading
import time
import traceback
import types

SCRIPT = pathlib.Path(__file__).resolve()
REPO = SCRIPT.parent.parent
JSON_NAME, MD_NAME, LOG_NAME = "gpu_side_by_side.json", "gpu_side_by_side.md", "gpu_side_by_side.log"
ATOL = RTOL = 1e-4  # err/tol = |ours - official| / (ATOL + RTOL |official|)
OUT_KEYS = ("predict_velocity", "latent")
WEIGHT_SEED = 20261202
GRACE_S = 30.0  # a worker may overrun its phase by this much before it is stopped
PHASES = ("official", "ours_f32", "ours_bf16", "probe")
PHASE_WEIGHTS = {"official": 0.28, "ours_f32": 0.27, "ours_bf16": 0.20, "probe": 0.25}
# features the official FoldingDiT and EMSampler read (model/torch/architecture.py, sampler.py)
OFFICIAL_FEATURES = (
    "ref_pos", "ref_element", "ref_charge", "ref_atom_name_chars", "ref_space_uid", "atom_pad_mask",
    "atom_to_token", "atom_to_token_idx", "mol_type", "res_type", "pocket_feature", "residue_index",
    "entity_id", "asym_id", "sym_id", "max_num_tokens", "esm_s",
)
OOM_MARKERS = ("RESOURCE_EXHAUSTED", "out of memory", "Out of memory", "OOM", "CUDA_ERROR_OUT_OF_MEMORY", "ALLOC_FAILED")


# ======================================================================================
# The package's entry points: the ONLY place this script names simplefold module paths
# (besides simplefold.devtools, which the official worker imports without jax).
# ======================================================================================
def api() -> types.SimpleNamespace:
    """Everything of simplefold this script uses (fix module paths here if the package moves them)."""
    import simplefold
    from simplefold import features
    from simplefold.sampling import sampler as sampling
    from simplefold.model import embeddings
    from simplefold.model.config import FoldingConfig
    from simplefold.model.folding import FoldingDiT, FoldingModel
    from simplefold.model.precision import cast_for_inference, with_precision

    return types.SimpleNamespace(
        load_official_model=simplefold.load_official_model,
        sample=sampling.sample,
        sample_memory_stats=sampling.memory_stats,
        estimate_sample_memory=sampling.estimate_sample_memory,
        featurize_sequence=features.featurize_sequence,
        add_batch_axis=features.add_batch_axis,
        fourier_freq_bands=embeddings.fourier_freq_bands,
        FoldingConfig=FoldingConfig,
        FoldingDiT=FoldingDiT,
        FoldingModel=FoldingModel,
        cast_for_inference=cast_for_inference,
        with_precision=with_precision,
    )


# ======================================================================================
# Settings
# ======================================================================================
SMOKE_SIZES = dict(hidden_size=64, num_heads=2, depth=2, atom_hidden=32, atom_heads=2, atom_depth=1)
SMOKE_PROBE_SIZES = dict(hidden_size=96, num_heads=2, depth=3, atom_hidden=32, atom_heads=2, atom_depth=2)


def settings(args) -> dict:
    """Sizes of the run: full (H200) or smoke (CPU)."""
    if args.smoke:
        s = dict(
            mode="smoke", arch_name="smoke_d64", sizes=SMOKE_SIZES, esm_model="esm2_8M",
            lengths=[32, 64], batches=[1, 2], precisions=["float32", "bfloat16"], reps=2, warmup=1,
            pairs=[[32, 1], [64, 2]],  # (L, B) of the forwards: both L and both B, fewer compilations
            sample_lengths=[32], steps=3, official_warmup_steps=2, tau=0.01,
            mfu_length=64, mfu_batches=[1],
            probe_arch="smoke_3b_standin", probe_sizes=SMOKE_PROBE_SIZES, probe_start=64, probe_max=256,
            probe_resolution=32, probe_limit_mib=args.probe_limit_mib if args.probe_limit_mib is not None else 15.0,
            probe_steps=2, budget_s=240.0,
        )
    else:
        s = dict(
            mode="full", arch_name="simplefold_100M", sizes=None, esm_model=None,
            lengths=[128, 256, 512, 1024], batches=[1, 8], precisions=["float32", "bfloat16"], reps=10, warmup=3,
            pairs=None,  # every L x B
            sample_lengths=[128, 256, 512], steps=500, official_warmup_steps=5, tau=0.01,
            mfu_length=1024, mfu_batches=[1, 8],
            probe_arch="simplefold_3B", probe_sizes=None, probe_start=4096, probe_max=65536,
            probe_resolution=1024, probe_limit_mib=args.probe_limit_mib, probe_steps=2, budget_s=450.0,
        )
    for k in ("lengths", "batches", "sample_lengths", "steps", "reps", "warmup", "budget_s", "probe_max",
              "probe_start", "probe_resolution", "mfu_length"):
        v = getattr(args, k, None)
        if v is not None:
            s[k] = v
    if args.precisions:
        s["precisions"] = args.precisions
    s["f32_matmul"] = args.f32_matmul
    s["peak_tflops"] = args.peak_tflops
    return s


def ours_config(A, sizes: dict | None, name: str, esm_model: str | None):
    """The port's FoldingConfig of the benchmarked architecture (built without the official code)."""
    if sizes is None:  # a released size: simplefold_100M, simplefold_3B, ...
        return getattr(A.FoldingConfig, name.replace(".", "_"))()
    esm = {"esm2_8M": (320, 7), None: (2560, 37), "esm2_3B": (2560, 37)}[esm_model]
    return A.FoldingConfig(
        name=name, hidden_size=sizes["hidden_size"], num_heads=sizes["num_heads"], depth=sizes["depth"],
        atom_hidden_size=sizes["atom_hidden"], atom_num_heads=sizes["atom_heads"],
        atom_encoder_depth=sizes["atom_depth"], atom_decoder_depth=sizes["atom_depth"],
        esm_dim=esm[0], esm_num_layers=esm[1],
    )


# ======================================================================================
# FLOPs from the config (2 per multiply-add; matrix products and attention only)
# ======================================================================================
def trunk_flops(cfg, m: int, b: int) -> float:
    """FLOPs of ``FoldingDiT.trunk`` on (b, m, D): per block qkv, attention (QK^T, PV), output
    projection, SwiGLU (3 matrices) per token, plus the adaLN modulation per sample."""
    d, h = cfg.hidden_size, cfg.trunk_mlp_hidden
    per_block = b * (2 * m * d * 3 * d + 4 * m * m * d + 2 * m * d * d + 3 * 2 * m * d * h + 2 * d * 6 * d)
    return float(cfg.depth * per_block)


def forward_flops(cfg, m: int, n: int, b: int) -> float:
    """FLOPs of one ``model(noised_pos, t, feats)`` call with batch-1 features shared by b samples:
    the trunk, the atom encoder/decoder blocks (local attention, n_keys keys per query) and the
    per-atom / per-token projections; the protein-only encoding (atom features, ESM projection)
    once."""
    d, da, ha = cfg.hidden_size, cfg.atom_hidden_size, cfg.atom_mlp_hidden
    atom_block = 2 * n * da * 3 * da + 4 * n * cfg.n_keys * da + 2 * n * da * da + 3 * 2 * n * da * ha + 2 * d * 6 * da
    atom_blocks = (cfg.atom_encoder_depth + cfg.atom_decoder_depth) * atom_block
    per_sample_proj = (
        2 * n * cfg.fourier_dim * d + 2 * n * 2 * d * d  # atom_pos_proj, atom_in_proj
        + 2 * n * d * da + 2 * n * da * d  # context2atom, atom2latent
        + 2 * m * 2 * d * d  # esm_cat_proj
        + 2 * n * d * d + 2 * n * d * da  # latent2atom
        + 2 * n * da * cfg.output_channels
    )
    encode = 2 * n * cfg.atom_feat_dim * d + 2 * m * cfg.esm_dim * d + 2 * m * cfg.esm_num_layers * cfg.esm_dim
    return float(trunk_flops(cfg, m, b) + b * (atom_blocks + per_sample_proj) + encode)


# ======================================================================================
# Worker plumbing
# ======================================================================================
def emit(obj: dict) -> None:
    import resource

    # the process's peak RSS so far (monotone over a worker's cases): the only peak a CPU run has
    obj.setdefault("process_peak_rss_bytes", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    print("@@ " + json.dumps(obj, default=_json_default), flush=True)


def cpu_info() -> dict:
    """The CPU model and the flags that decide bf16 speed (AMX / AVX-512 BF16), from /proc/cpuinfo."""
    model, flags = platform.processor() or "?", set()
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    except OSError:
        pass
    wanted = ("amx_bf16", "amx_tile", "amx_int8", "avx512_bf16", "avx512f", "avx2", "fma")
    return {"cpu_model": model, "cpu_flags": [f for f in wanted if f in flags], "cpu_threads": len(os.sched_getaffinity(0))}


def _json_default(x):
    try:
        import numpy as np

        if isinstance(x, np.generic):
            return x.item()
        if isinstance(x, np.ndarray):
            return x.tolist()
    except ImportError:
        pass
    return str(x)


class Clock:
    """A worker's phase deadline and the skip rule: a case runs only if the previous one's wall
    time (x ``growth``) still fits before the deadline."""

    def __init__(self, deadline: float, growth: float = 2.0):
        self.deadline, self.growth, self.last = deadline, growth, 0.0

    def left(self) -> float:
        return self.deadline - time.time()

    def fits(self) -> bool:
        return self.left() > max(2.0, self.growth * self.last)

    def ran(self, seconds: float) -> None:
        self.last = seconds


def skip(case: dict, why: str, side: str) -> None:
    emit(dict(case, kind="skipped", of=case.get("kind"), side=side, reason=why))


_INPUTS: dict = {}


def load_inputs(work: pathlib.Path, length: int):
    """(batch-1 features, noised_pos (Bmax, N, 3), t (Bmax,)) of length L (the last L read is cached)."""
    import numpy as np

    if length not in _INPUTS:
        _INPUTS.clear()
        with np.load(work / f"inputs_L{length}.npz") as z:
            arrs = {k: z[k] for k in z.files}
        noised, t = arrs.pop("noised_pos"), arrs.pop("t")
        _INPUTS[length] = (arrs, noised, t)
    return _INPUTS[length]


def err_over_tol(got, ref) -> float:
    import numpy as np

    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    if got.shape != ref.shape:
        raise ValueError(f"shape {got.shape} != official {ref.shape}")
    v = float((np.abs(got - ref) / (ATOL + RTOL * np.abs(ref))).max())
    return v if math.isfinite(v) else float("inf")


def rel_l2(got, ref) -> float:
    import numpy as np

    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    return float(np.linalg.norm(got - ref) / max(np.linalg.norm(ref), 1e-30))


def official_out_path(work: pathlib.Path, length: int, batch: int) -> pathlib.Path:
    return work / f"official_f32_L{length}_B{batch}.npz"


def is_oom(e: BaseException) -> bool:
    s = f"{type(e).__name__}: {e}"
    return any(m in s for m in OOM_MARKERS)


# ======================================================================================
# Official worker (torch; no jax imported)
# ======================================================================================
def worker_official(spec: dict) -> int:
    import numpy as np

    from simplefold.devtools import official

    torch = official.import_official(spec["official_src"], stub_writers=True)
    tf32 = spec["f32_matmul"] == "tf32"
    torch.set_float32_matmul_precision("high" if tf32 else "highest")
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    cuda = torch.cuda.is_available()
    dev = torch.device("cuda" if cuda else "cpu")
    emit(dict(kind="info", side="official", torch=torch.__version__, torch_cuda=torch.version.cuda,
              cuda_available=cuda, device=torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu",
              torch_threads=torch.get_num_threads(), stubbed_modules=official.stubbed_modules(),
              official_commit=official.official_commit(spec["official_src"]),
              official_package=str(official.package_root(spec["official_src"])),
              tf32=torch.backends.cuda.matmul.allow_tf32, float32_matmul_precision=torch.get_float32_matmul_precision()))
    from model.flow import LinearPath
    from model.torch import sampler as sampler_mod

    t0 = time.perf_counter()
    model, summary, _ = official.official_model(spec["sizes"], esm_model=spec["esm_model"])
    sd = torch.load(spec["ckpt"], map_location="cpu", weights_only=True)
    model.load_state_dict(sd, strict=True)
    del sd
    model = model.to(dev).float().eval()
    emit(dict(kind="official_model", summary=summary, load_s=time.perf_counter() - t0,
              params=int(sum(p.numel() for p in model.parameters()))))

    def sync():
        if cuda:
            torch.cuda.synchronize()

    def reset_peak():
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()

    def peak():
        return int(torch.cuda.max_memory_allocated()) if cuda else None

    def autocast(precision):
        if precision == "bfloat16":
            return torch.autocast(device_type=dev.type, dtype=torch.bfloat16)
        return torch.autocast(device_type=dev.type, enabled=False)

    work = pathlib.Path(spec["work"])

    def forward_case(case):
        feats_np, noised_np, t_np = load_inputs(work, case["L"])
        b = case["B"]
        # the official inference repeats the protein's features B times
        feats = {k: torch.from_numpy(v).to(dev).repeat_interleave(b, dim=0) for k, v in feats_np.items()}
        x = torch.from_numpy(noised_np[:b]).to(dev)
        t = torch.from_numpy(t_np[:b]).to(dev)
        reset_peak()

        def call():
            with torch.no_grad(), autocast(case["precision"]):
                return model(noised_pos=x, t=t, feats=feats)

        sync()
        f0 = time.perf_counter()
        out = call()
        sync()
        first = time.perf_counter() - f0
        for _ in range(spec["warmup"]):
            call()
        sync()
        times = []
        for _ in range(spec["reps"]):
            s0 = time.perf_counter()
            out = call()
            sync()
            times.append(time.perf_counter() - s0)
        res = {k: out[k].float().cpu().numpy() for k in OUT_KEYS}
        r = dict(case, side="official", N=int(noised_np.shape[1]), first_call_s=first, times_s=times,
                 median_ms=1e3 * statistics.median(times), min_ms=1e3 * min(times), peak_bytes=peak(),
                 finite=bool(all(np.isfinite(v).all() for v in res.values())))
        ref_path = official_out_path(work, case["L"], b)
        if case["precision"] == "float32":
            np.savez(ref_path, **res)
        elif ref_path.is_file():
            with np.load(ref_path) as z:
                r["rel_l2_vs_official_f32"] = {k: rel_l2(res[k], z[k]) for k in OUT_KEYS}
        return r

    def sample_case(case):
        feats_np, _, _ = load_inputs(work, case["L"])
        feats = {k: torch.from_numpy(v).to(dev) for k, v in feats_np.items()}
        g = torch.Generator(device=dev).manual_seed(0)
        noise = torch.randn(tuple(feats["ref_pos"].shape), generator=g, device=dev)
        path = LinearPath()

        def run(steps):
            em = sampler_mod.EMSampler(num_timesteps=steps, t_start=1e-4, tau=spec["tau"], log_timesteps=True,
                                       w_cutoff=0.99)
            torch.manual_seed(0)
            with torch.no_grad(), official.patched(sampler_mod, "tqdm", lambda it, **_: it):
                return em.sample(model, path, noise.clone(), feats)["denoised_coords"]

        run(spec["official_warmup_steps"])  # warm-up (the forward at this L ran before too)
        sync()
        reset_peak()
        s0 = time.perf_counter()
        y = run(case["steps"])
        sync()
        wall = time.perf_counter() - s0
        return dict(case, side="official", N=int(feats_np["ref_pos"].shape[1]), wall_s=wall,
                    ms_per_step=1e3 * wall / case["steps"], peak_bytes=peak(), finite=bool(torch.isfinite(y).all()))

    clock = Clock(spec["deadline"])
    for case in spec["cases"]:
        if not clock.fits():
            skip(case, f"official phase budget ({clock.left():.0f} s left, last case {clock.last:.0f} s)", "official")
            continue
        c0 = time.time()
        try:  # each case's tensors are freed when its function returns, before the next peak reset
            emit(forward_case(case) if case["kind"] == "forward" else sample_case(case))
        except Exception as e:  # noqa: BLE001  (an OOM or a bug in one case must not end the run)
            emit(dict(case, kind="error", of=case["kind"], side="official", error=f"{type(e).__name__}: {e}",
                      oom=is_oom(e), traceback=traceback.format_exc()[-2000:]))
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
        clock.ran(time.time() - c0)
    return 0


# ======================================================================================
# Ours workers (jax)
# ======================================================================================
def _jax_setup(spec: dict):
    import jax

    if spec.get("f32_matmul") and spec.get("precision_mode") == "float32":
        jax.config.update("jax_default_matmul_precision", "highest" if spec["f32_matmul"] == "float32" else "tensorfloat32")
    dev = jax.devices()[0]
    emit(dict(kind="info", side="ours", jax=jax.__version__, backend=jax.default_backend(),
              device=getattr(dev, "device_kind", str(dev)), devices=[str(d) for d in jax.devices()],
              matmul_precision=str(getattr(jax.config, "jax_default_matmul_precision", "?")),
              xla_env={k: v for k, v in os.environ.items() if k.startswith("XLA_")},
              bytes_limit=(dev.memory_stats() or {}).get("bytes_limit")))
    return jax, dev


def _mem(dev) -> dict:
    st = dev.memory_stats() or {}
    return {"bytes_in_use": st.get("bytes_in_use"), "peak_bytes_in_use": st.get("peak_bytes_in_use")}


def _plan_bytes(compiled) -> dict:
    ma = compiled.memory_analysis()
    if ma is None:
        return {}
    return {"plan_argument_bytes": int(ma.argument_size_in_bytes), "plan_temp_bytes": int(ma.temp_size_in_bytes),
            "plan_output_bytes": int(ma.output_size_in_bytes)}


def _xla_flops(compiled) -> float | None:
    """XLA's own FLOP count of a compiled call (it counts a scan's body once, not per iteration)."""
    try:
        ca = compiled.cost_analysis()
        ca = ca[0] if isinstance(ca, (list, tuple)) else ca
        return float(ca["flops"])
    except Exception:  # noqa: BLE001  (not every backend reports it)
        return None


def _timed(fn, warmup: int, reps: int):
    """(first-call s, [timed s]) of ``fn()`` (which must block until its result is ready)."""
    f0 = time.perf_counter()
    out = fn()
    first = time.perf_counter() - f0
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        s0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - s0)
    return first, times, out


def _load_ours(A, spec, precision):
    import jax

    t0 = time.perf_counter()
    model = A.load_official_model(spec["ckpt"], A.FoldingConfig.from_dict(spec["arch"]), precision=precision)

    emit(dict(kind="ours_model", precision=precision, load_s=time.perf_counter() - t0,
              params=int(sum(x.size for x in jax.tree.leaves(model.state)))))
    return model


def _forward_case(A, jax, dev, model, case, spec, work):
    import jax.numpy as jnp
    import numpy as np

    feats_np, noised_np, t_np = load_inputs(work, case["L"])
    b = case["B"]
    prepared = model.prepare(feats_np)
    x = jnp.asarray(noised_np[:b])
    t = jnp.asarray(t_np[:b])
    jax.block_until_ready((x, t, dict(prepared)))  # (a dict subclass is one pytree leaf)
    live = _mem(dev)["bytes_in_use"]

    def call():
        return jax.block_until_ready(model(x, t, prepared))

    first, times, out = _timed(call, spec["warmup"], spec["reps"])
    compiled = model.apply.lower(model.state, x, t, dict(prepared)).compile()  # the call's, from the cache
    plan = _plan_bytes(compiled)
    res = {k: np.asarray(out[k]) for k in OUT_KEYS}
    r = dict(case, side="ours", N=int(noised_np.shape[1]), first_call_s=first, times_s=times,
             median_ms=1e3 * statistics.median(times), min_ms=1e3 * min(times), live_bytes_before=live, **plan,
             **{"cumulative_" + k: v for k, v in _mem(dev).items()},
             finite=bool(all(np.isfinite(v).all() for v in res.values())),
             flops=forward_flops(model.config, case["L"], int(noised_np.shape[1]), b), xla_flops=_xla_flops(compiled))
    if live is not None and plan:
        r["peak_bytes"] = int(live + plan["plan_temp_bytes"] + plan["plan_output_bytes"])
    ref_path = official_out_path(work, case["L"], b)
    if ref_path.is_file():
        with np.load(ref_path) as z:
            if case["precision"] == "float32":
                r["err_over_tol"] = {k: err_over_tol(res[k], z[k]) for k in OUT_KEYS}
                r["max_abs_err"] = {k: float(np.abs(res[k].astype(np.float64) - z[k]).max()) for k in OUT_KEYS}
            else:
                r["rel_l2_vs_official_f32"] = {k: rel_l2(res[k], z[k]) for k in OUT_KEYS}
    emit(r)


def _sample_case(A, jax, dev, model, case, spec, work):
    import numpy as np

    feats_np, _, _ = load_inputs(work, case["L"])
    prepared = model.prepare(feats_np)
    jax.block_until_ready(dict(prepared))
    live = _mem(dev)["bytes_in_use"]
    key = jax.random.key(0)

    def run():
        return jax.block_until_ready(A.sample(model, prepared, num_steps=case["steps"], tau=spec["tau"], key=key))

    first, times, y = _timed(run, 0, 1)
    plan = A.sample_memory_stats(model, prepared, num_samples=1, num_steps=case["steps"])
    r = dict(case, side="ours", N=int(feats_np["ref_pos"].shape[1]), first_call_s=first, wall_s=times[0],
             ms_per_step=1e3 * times[0] / case["steps"], live_bytes_before=live,
             plan_argument_bytes=plan["argument"], plan_temp_bytes=plan["temp"], plan_output_bytes=plan["output"],
             **{"cumulative_" + k: v for k, v in _mem(dev).items()}, finite=bool(np.isfinite(np.asarray(y)).all()))
    if live is not None:
        r["peak_bytes"] = int(live + plan["temp"] + plan["output"])
    emit(r)


def _trunk_case(jax, model, case, spec, work=None, prepared=None):
    """Ours' trunk alone, bf16: ms per call, FLOPs from the config, MFU."""
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    cfg = model.config
    if prepared is None:
        prepared = model.prepare(load_inputs(work, case["L"])[0])
    graphdef = model.graphdef
    ctx = jax.jit(lambda st, f: nnx.merge(graphdef, st).encode(f).token_ctx)(model.state, dict(prepared))
    trunk = jax.jit(lambda st, h, c, tctx: nnx.merge(graphdef, st).trunk(h, c, tctx))
    rng = np.random.default_rng(case["B"])
    h = jnp.asarray(rng.standard_normal((case["B"], case["L"], cfg.hidden_size), np.float32))
    c = jnp.asarray(rng.standard_normal((case["B"], cfg.hidden_size), np.float32))

    def call():
        return jax.block_until_ready(trunk(model.state, h, c, ctx))

    first, times, out = _timed(call, spec["warmup"], spec["reps"])
    xla = _xla_flops(trunk.lower(model.state, h, c, ctx).compile())
    flops = trunk_flops(cfg, case["L"], case["B"])
    med = statistics.median(times)
    on_gpu = jax.default_backend() == "gpu"
    emit(dict(case, side="ours", first_call_s=first, times_s=times, median_ms=1e3 * med, flops=flops, xla_flops=xla,
              depth=cfg.depth,
              tflops_per_s=flops / med / 1e12, dtype=cfg.dtype,
              mfu=(flops / med / (spec["peak_tflops"] * 1e12)) if on_gpu else None,
              finite=bool(np.isfinite(np.asarray(out)).all())))


def worker_ours(spec: dict) -> int:
    A = api()
    jax, dev = _jax_setup(spec)
    precision = spec["precision_mode"]
    model = _load_ours(A, spec, precision)
    work = pathlib.Path(spec["work"])
    clock = Clock(spec["deadline"])
    for case in spec["cases"]:
        if not clock.fits():
            skip(case, f"ours {precision} phase budget ({clock.left():.0f} s left, last case {clock.last:.0f} s)", "ours")
            continue
        c0 = time.time()
        try:
            if case["kind"] == "forward":
                _forward_case(A, jax, dev, model, case, spec, work)
            elif case["kind"] == "sample":
                _sample_case(A, jax, dev, model, case, spec, work)
            elif case["kind"] == "mfu":
                _trunk_case(jax, model, case, spec, work)
        except Exception as e:  # noqa: BLE001
            emit(dict(case, kind="error", of=case["kind"], side="ours", error=f"{type(e).__name__}: {e}",
                      oom=is_oom(e), traceback=traceback.format_exc()[-2000:]))
        gc.collect()
        clock.ran(time.time() - c0)
    return 0


# ----------------------------------------------------------------------------- the 3B probe
def lean_features(A, length: int, cfg, seed: int, chunk: int = 256):
    """Batch-1 network features of a random protein of ``length`` residues without the (N, M)
    one-hot matrices (which at L = 16k would take tens of GB on the host): the protein is
    featurised in chunks of ``chunk`` residues (official layout, each chunk's atoms padded to 32)
    and stitched with index offsets; ``atom_to_token`` is replaced by its row sums. ``esm_s`` is a
    (1, 1, E, C) placeholder: :func:`probe_inputs` makes the full array on the device."""
    import numpy as np

    rng = np.random.default_rng(seed)
    aa = np.array(list("ACDEFGHIKLMNPQRSTVWY"))
    atom_keys = ("ref_pos", "ref_element", "ref_charge", "ref_atom_name_chars", "ref_space_uid", "atom_pad_mask",
                 "atom_to_token_idx")
    tok_keys = ("mol_type", "res_type", "pocket_feature", "residue_index", "entity_id", "asym_id", "sym_id")
    parts = {k: [] for k in atom_keys + tok_keys}
    off = 0
    while off < length:
        m = min(chunk, length - off)
        f = A.featurize_sequence("".join(rng.choice(aa, m)))
        f["ref_space_uid"] = f["ref_space_uid"] + off
        f["atom_to_token_idx"] = f["atom_to_token_idx"] + off
        f["residue_index"] = f["residue_index"] + off
        for k in atom_keys + tok_keys:
            parts[k].append(f[k])
        off += m
    out = {k: np.concatenate(v)[None] for k, v in parts.items()}
    out["atom_to_token_weight"] = out["atom_pad_mask"].astype(np.float32)
    out["max_num_tokens"] = np.array([length], np.int64)
    out["esm_s"] = np.zeros((1, 1, cfg.esm_num_layers, cfg.esm_dim), np.float32)
    return out


def probe_inputs(A, model, length: int, seed: int):
    """Prepared (on-device) batch-1 features of :func:`lean_features`, with a random ``esm_s``
    (1, L, E, C) drawn on the device (at L = 32k it is 12 GB: no host copy, no transfer)."""
    import jax
    import jax.numpy as jnp

    cfg = model.config
    prepared = model.prepare(lean_features(A, length, cfg, seed))
    shape = (1, length, cfg.esm_num_layers, cfg.esm_dim)
    prepared["esm_s"] = jax.jit(lambda k: jax.random.normal(k, shape, jnp.float32))(jax.random.key(seed))
    jax.block_until_ready(dict(prepared))
    return prepared


def random_module(A, cfg, seed: int = 0):
    """A ``FoldingDiT`` of ``cfg`` with random weights made on the device in one small program.

    Every tensor is a window of one N(0, 1) stream (as long as the largest tensor), scaled as
    ``simplefold.model.random_init`` scales its draws (kernels 1/sqrt(fan_in), norm scales
    1 + 0.2 z, biases 0.2 z); ``freq_bands`` is the constant table. Per-tensor RNG calls would
    take XLA:CPU seconds to compile, and a 3B checkpoint file would take 12 GB.
    """
    import jax
    import jax.numpy as jnp
    from flax import nnx

    abstract = nnx.eval_shape(lambda: A.FoldingDiT(cfg, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(abstract)
    flat = list(nnx.to_flat_state(state))
    names = [str(path[-1]) for path, _ in flat]
    avals = [v.get_value() for _, v in flat]
    sizes = [math.prod(a.shape) for a in avals]
    pad = 1031
    bands = A.fourier_freq_bands(cfg.fourier_num_freqs, cfg.fourier_min_freq_log2, cfg.fourier_max_freq_log2)

    def init(key):
        base = jax.random.normal(key, (max(sizes) + pad,), jnp.float32)
        out = []
        for i, (name, a, size) in enumerate(zip(names, avals, sizes)):
            if name == "freq_bands":
                out.append(jnp.asarray(bands, a.dtype).reshape(a.shape))
                continue
            off = (i * 7919) % pad
            z = base[off : off + size].reshape(a.shape)
            if name == "kernel":
                z = z / math.sqrt(a.shape[-2])
            elif name == "scale":
                z = 1.0 + 0.2 * z
            elif name == "bias":
                z = 0.2 * z
            out.append(z.astype(a.dtype))
        return out

    for (_, var), value in zip(flat, jax.jit(init)(jax.random.key(seed))):
        var.set_value(value)
    return A.cast_for_inference(nnx.merge(graphdef, state))


def worker_probe(spec: dict) -> int:
    A = api()
    jax, dev = _jax_setup(spec)
    import jax.numpy as jnp

    t0 = time.perf_counter()
    cfg = A.with_precision(A.FoldingConfig.from_dict(spec["probe_config"]), "bfloat16")
    model = A.FoldingModel(random_module(A, cfg))
    param_bytes = int(sum(x.nbytes for x in jax.tree.leaves(model.state)))
    emit(dict(kind="probe_model", config=cfg.to_dict(), init_s=time.perf_counter() - t0,
              params=int(sum(x.size for x in jax.tree.leaves(model.state))), param_bytes=param_bytes, **_mem(dev)))
    clock = Clock(spec["deadline"], growth=1.5)
    if spec.get("mfu") and clock.fits():
        case = dict(spec["mfu"])
        c0 = time.time()
        try:
            _trunk_case(jax, model, case, spec, prepared=probe_inputs(A, model, case["L"], seed=1))
        except Exception as e:  # noqa: BLE001
            emit(dict(case, kind="error", of="mfu", side="ours", error=f"{type(e).__name__}: {e}", oom=is_oom(e)))
        clock.ran(time.time() - c0)
    lo, hi = spec["lo"], spec["hi"]  # largest L known to fit (0: none), smallest known not to (None)
    res, limit = spec["resolution"], spec.get("limit_mib")
    key = jax.random.key(0)
    while True:
        if hi is None:
            L = spec["start"] if lo == 0 else 2 * lo
            if L > spec["max"]:
                emit(dict(kind="probe_done", lo=lo, hi=None, reason=f"fits up to the probe cap {spec['max']}"))
                return 0
        else:
            if hi - lo <= res:
                emit(dict(kind="probe_done", lo=lo, hi=hi, reason=f"bracket within {res} residues"))
                return 0
            L = max(res, (lo + hi) // 2 // res * res)
            if L <= lo:
                L = lo + res
        if not clock.fits():
            emit(dict(kind="probe_done", lo=lo, hi=hi, reason=f"probe phase budget ({clock.left():.0f} s left)"))
            return 0
        emit(dict(kind="probe_try", L=L))
        if L == spec.get("die_at"):  # testing aid: a worker that dies mid-probe (as on a hard GPU fault)
            os._exit(134)
        c0 = time.time()
        rec = dict(kind="probe", L=L)
        prepared = None
        try:
            prepared = probe_inputs(A, model, L, seed=L)
            rec["N"] = int(prepared["ref_pos"].shape[1])
            if limit is not None:  # smoke: a stand-in capacity, checked without compiling
                est = A.estimate_sample_memory(cfg, rec["N"], L, 1, param_bytes=param_bytes)
                rec["estimated_bytes"] = est
                if est > limit * 2**20:
                    rec.update(fits=False, why=f"estimated {est / 2**20:.1f} MiB > --probe-limit-mib {limit}")
            if "fits" not in rec:
                s0 = time.perf_counter()
                y = jax.block_until_ready(A.sample(model, prepared, num_steps=spec["steps"], tau=0.01, key=key))
                ok = bool(jnp.isfinite(y).all())
                rec.update(fits=ok, wall_s=time.perf_counter() - s0, **_mem(dev))
                if not ok:
                    rec["why"] = "non-finite output"
        except Exception as e:  # noqa: BLE001
            if not is_oom(e):
                emit(dict(kind="error", of="probe", side="ours", L=L, error=f"{type(e).__name__}: {e}",
                          traceback=traceback.format_exc()[-2000:]))
                return 1
            rec.update(fits=False, why=f"out of memory: {str(e).splitlines()[0][:300]}")
        prepared = None
        gc.collect()
        clock.ran(time.time() - c0)
        emit(rec)
        if rec["fits"]:
            lo = L
        else:
            hi = L


WORKERS = {"official": worker_official, "ours": worker_ours, "probe": worker_probe}


# ======================================================================================
# Driver
# ======================================================================================
class Log:
    def __init__(self, path: pathlib.Path, echo: bool = True):
        self.f = open(path, "a", encoding="utf-8")
        self.echo = echo
        self.t0 = time.time()

    def __call__(self, msg: str) -> None:
        line = f"[{time.time() - self.t0:6.1f}s] {msg}"
        line = line if line.endswith("\n") else line + "\n"
        self.f.write(line)
        self.f.flush()
        if self.echo:
            sys.stdout.write(line)
            sys.stdout.flush()


def worker_env(extra: dict | None = None) -> dict:
    env = dict(os.environ)
    # the driver runs its own JAX on the CPU only; workers get the caller's setting back
    orig = env.pop("_GPU_SBS_ORIG_JAX_PLATFORMS", None)
    if orig:
        env["JAX_PLATFORMS"] = orig
    elif orig is not None:
        env.pop("JAX_PLATFORMS", None)
    paths = [str(REPO)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env.setdefault("TQDM_DISABLE", "1")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def run_worker(python: str, kind: str, spec: dict, work: pathlib.Path, log: Log, env: dict, tag: str):
    """Run one worker to its end or its deadline (+ grace); returns (results, returncode, killed)."""
    spec_path = work / f"spec_{tag}.json"
    spec_path.write_text(json.dumps(spec, indent=1))
    cmd = [python, str(SCRIPT), "--worker", kind, "--spec", str(spec_path)]
    log(f"--- worker {tag}: {' '.join(cmd)}")
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, bufsize=1)
    killed = {"v": False}

    def kill():
        killed["v"] = True
        p.kill()

    timer = threading.Timer(max(1.0, spec["deadline"] + GRACE_S - time.time()), kill)
    timer.start()
    results = []
    try:
        for line in p.stdout:
            if line.startswith("@@ "):
                try:
                    r = json.loads(line[3:])
                except ValueError:
                    log(line.rstrip())
                    continue
                results.append(r)
                log(f"[{tag}] {summarise(r)}")
            else:
                log(f"[{tag}] {line.rstrip()}")
    finally:
        rc = p.wait()
        timer.cancel()
    log(f"--- worker {tag} ended: exit {rc}{' (stopped at its deadline)' if killed['v'] else ''}")
    return results, rc, killed["v"]


def summarise(r: dict) -> str:
    keep = ("kind", "of", "side", "precision", "L", "B", "N", "median_ms", "wall_s", "first_call_s", "err_over_tol",
            "rel_l2_vs_official_f32", "peak_bytes", "fits", "why", "reason", "error", "mfu", "tflops_per_s", "lo", "hi")
    out = {}
    for k in keep:
        if k in r:
            v = r[k]
            out[k] = round(v, 4) if isinstance(v, float) else v
    return json.dumps(out, default=str)


def check_official(args, s) -> tuple[bool, str, str | None]:
    """(available, reason, official src) for the official side."""
    if args.no_official:
        return False, "--no-official given", None
    src = args.official_src or os.environ.get("SIMPLEFOLD_OFFICIAL_SRC") or str(REPO / ".official")
    from simplefold.devtools.official import package_root

    try:
        root = package_root(src)
    except FileNotFoundError as e:
        return False, f"no official tree: {e} (set --official-src or SIMPLEFOLD_OFFICIAL_SRC)", None
    code = "import torch, hydra, omegaconf, einops, mashumaro; print(torch.__version__)"
    try:
        p = subprocess.run([args.official_python, "-c", code], capture_output=True, text=True, timeout=300, env=worker_env())
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, f"official python {args.official_python!r} unusable: {e}", str(root)
    if p.returncode:
        tail = (p.stderr.strip().splitlines() or ["?"])[-1]
        return False, f"official python {args.official_python} lacks a dependency: {tail}", str(root)
    return True, f"torch {p.stdout.strip()} at {args.official_python}", str(root)


def prepare(args, s, A, work: pathlib.Path, log: Log) -> dict:
    """Weights checkpoint (torch zip, written without torch) and per-L inputs in ``work``."""
    import numpy as np

    from simplefold.devtools.official import official_state_dict_shapes
    from simplefold.devtools.torch_writer import save_torch_zip
    from simplefold.model.random_init import random_state_dict, state_dict_digest

    t0 = time.perf_counter()
    cfg = ours_config(A, s["sizes"], s["arch_name"], s["esm_model"])
    shapes = official_state_dict_shapes(cfg)
    bands = A.fourier_freq_bands(cfg.fourier_num_freqs, cfg.fourier_min_freq_log2, cfg.fourier_max_freq_log2)
    weights = random_state_dict(shapes, seed=WEIGHT_SEED, freq_bands=bands)
    ckpt = work / f"{cfg.name}_random.ckpt"
    save_torch_zip(ckpt, weights)
    info = dict(config=cfg.to_dict(), ckpt=str(ckpt), weights_seed=WEIGHT_SEED, weights_sha256=state_dict_digest(weights),
                params=int(sum(w.size for w in weights.values())), ckpt_bytes=ckpt.stat().st_size)
    del weights
    rng = np.random.default_rng(0)
    inputs = {}
    for length in sorted(set(s["lengths"]) | set(s["sample_lengths"]) | {s["mfu_length"]}):
        seq = "".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), length))
        esm_s = rng.standard_normal((length, cfg.esm_num_layers, cfg.esm_dim), np.float32)
        f = A.add_batch_axis(A.featurize_sequence(seq, esm_s=esm_s), 1)
        feats = {k: np.ascontiguousarray(f[k]) for k in OFFICIAL_FEATURES}
        n = feats["ref_pos"].shape[1]
        bmax = max(s["batches"])
        noised = rng.standard_normal((bmax, n, 3), np.float32)
        t = np.linspace(0.1, 0.9, bmax, dtype=np.float32) if bmax > 1 else np.array([0.7], np.float32)
        np.savez(work / f"inputs_L{length}.npz", noised_pos=noised, t=t, **feats)
        inputs[str(length)] = dict(N=int(n), atoms_real=int(feats["atom_pad_mask"].sum()), sequence=seq)
    info["inputs"] = inputs
    info["prepare_s"] = time.perf_counter() - t0
    log(f"prepared {ckpt.name} ({info['params']:,} parameters, {info['ckpt_bytes'] / 2**20:.0f} MiB) and inputs "
        f"for L = {sorted(inputs, key=int)} in {info['prepare_s']:.1f} s")
    return info


def machine_info(args) -> dict:
    info = dict(date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                hostname=platform.node(), platform=platform.platform(), machine=platform.machine(),
                cpus=os.cpu_count(), python=sys.version.split()[0], python_exe=sys.executable,
                official_python=args.official_python, **cpu_info())
    try:
        p = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version,clocks.max.sm",
                            "--format=csv,noheader"], capture_output=True, text=True, timeout=30)
        info["nvidia_smi"] = p.stdout.strip() if p.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired):
        info["nvidia_smi"] = None
    versions = {}
    for mod in ("numpy", "jax", "jaxlib", "flax", "optax"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001
            versions[mod] = None
    info["versions"] = versions
    try:
        p = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        info["simplefold_commit"] = p.stdout.strip() if p.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired):
        info["simplefold_commit"] = None
    return info


def plan_cases(s) -> dict:
    def fw(p):
        pairs = [(L, B) for B in s["batches"] for L in s["lengths"]]
        if s.get("pairs"):
            pairs = [(L, B) for L, B in pairs if [L, B] in s["pairs"]]
        return [dict(kind="forward", precision=p, L=L, B=B) for L, B in pairs]

    samples = [dict(kind="sample", precision="float32", L=L, B=1, steps=s["steps"]) for L in s["sample_lengths"]]
    mfu = [dict(kind="mfu", precision="bfloat16", model=s["arch_name"], L=s["mfu_length"], B=B) for B in s["mfu_batches"]]
    f32 = fw("float32") if "float32" in s["precisions"] else []
    bf16 = fw("bfloat16") if "bfloat16" in s["precisions"] else []
    b1 = min(s["batches"])
    # priority order (a phase that runs out of time drops the tail): one-sample forwards (parity),
    # the whole samples, then the batched forwards; bf16: the trunk MFU first
    f32_first = [c for c in f32 if c["B"] == b1] + samples + [c for c in f32 if c["B"] != b1]
    # ours also samples in bf16 (the mixed mode); the official sampler runs float32 only, as its CLI does
    bf16_samples = [dict(c, precision="bfloat16") for c in samples] if bf16 else []
    return {
        "official": f32_first + bf16,
        "ours_f32": f32_first,
        "ours_bf16": mfu + bf16 + bf16_samples,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out_dir", nargs="?")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, CPU, every code path (about a minute)")
    ap.add_argument("--no-official", action="store_true", help="skip the official side")
    ap.add_argument("--official-src", default=None, help="official tree or its src/simplefold (default "
                    "$SIMPLEFOLD_OFFICIAL_SRC, else <repo>/.official)")
    ap.add_argument("--official-python", default=os.environ.get("SIMPLEFOLD_OFFICIAL_PYTHON") or sys.executable)
    ap.add_argument("--ours-python", default=sys.executable)
    ap.add_argument("--work", default=None, help="scratch folder for weights and inputs (default: a temp folder)")
    ap.add_argument("--budget-s", type=float, default=None, help="whole-run time budget (450; smoke 240)")
    ap.add_argument("--lengths", type=int, nargs="+", default=None)
    ap.add_argument("--batches", type=int, nargs="+", default=None)
    ap.add_argument("--sample-lengths", type=int, nargs="*", default=None)
    ap.add_argument("--steps", type=int, default=None, help="sampler steps (500; smoke 3)")
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--warmup", type=int, default=None)
    ap.add_argument("--precisions", nargs="+", choices=["float32", "bfloat16"], default=None)
    ap.add_argument("--f32-matmul", choices=["float32", "tf32"], default="float32")
    ap.add_argument("--mfu-length", type=int, default=None, help="L of the trunk MFU cases (1024; smoke 64)")
    ap.add_argument("--peak-tflops", type=float, default=790.0, help="bf16 dense peak for the MFU (790: H200 here)")
    ap.add_argument("--probe-start", type=int, default=None)
    ap.add_argument("--probe-max", type=int, default=None)
    ap.add_argument("--probe-resolution", type=int, default=None)
    ap.add_argument("--probe-limit-mib", type=float, default=None,
                    help="count a probe as not fitting when sampler.estimate_sample_memory exceeds this (a stand-in "
                         "capacity for the smoke run: 15; GPU: none, the real out-of-memory decides)")
    ap.add_argument("--no-probe", action="store_true")
    ap.add_argument("--probe-die-at", type=int, default=None, help=argparse.SUPPRESS)  # testing aid
    ap.add_argument("--quiet", action="store_true", help="log to the file only")
    ap.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    ap.add_argument("--spec", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        return WORKERS[args.worker](json.loads(pathlib.Path(args.spec).read_text()))
    if not args.out_dir:
        ap.error("OUT_DIR is required")
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))

    # the driver's own JAX (config objects, abstract shapes) stays on the CPU: a GPU backend here
    # would take most of the GPU's memory away from the workers
    os.environ.setdefault("_GPU_SBS_ORIG_JAX_PLATFORMS", os.environ.get("JAX_PLATFORMS", ""))
    os.environ["JAX_PLATFORMS"] = "cpu"

    t_start = time.time()
    s = settings(args)
    deadline = t_start + s["budget_s"]
    out = pathlib.Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / LOG_NAME).write_text("")
    log = Log(out / LOG_NAME, echo=not args.quiet)
    import tempfile

    work = pathlib.Path(args.work) if args.work else pathlib.Path(tempfile.mkdtemp(prefix="gpu_sbs_"))
    work.mkdir(parents=True, exist_ok=True)
    log(f"gpu_side_by_side {s['mode']}: out {out}, work {work}, budget {s['budget_s']:.0f} s")

    report = dict(mode=s["mode"], settings=s, machine=machine_info(args), started=t_start, results=[], workers={},
                  skipped=[], errors=[], official=None)

    def save():
        report["elapsed_s"] = time.time() - t_start
        (out / JSON_NAME).write_text(json.dumps(report, indent=1, default=_json_default) + "\n")
        (out / MD_NAME).write_text(markdown(report))

    ok, why, src = check_official(args, s)
    report["official"] = dict(available=ok, reason=why, src=src)
    log(f"official side: {'yes' if ok else 'SKIPPED'} ({why})")
    A = api()
    report["prepared"] = prepare(args, s, A, work, log)
    save()

    cases = plan_cases(s)
    cfg_dict = report["prepared"]["config"]
    base = dict(work=str(work), ckpt=report["prepared"]["ckpt"], warmup=s["warmup"], reps=s["reps"], tau=s["tau"],
                f32_matmul=s["f32_matmul"], peak_tflops=s["peak_tflops"])
    phases = [p for p in PHASES if not (p == "official" and not ok) and not (p == "probe" and args.no_probe)]
    if not ok:
        report["skipped"] += [dict(c, side="official", reason=f"official side skipped: {why}") for c in cases["official"]]
    if args.no_probe:
        report["skipped"].append(dict(kind="probe", reason="--no-probe given"))

    for i, phase in enumerate(phases):
        left = deadline - time.time()
        wsum = sum(PHASE_WEIGHTS[p] for p in phases[i:])
        phase_deadline = time.time() + max(0.0, left) * PHASE_WEIGHTS[phase] / wsum
        if left < 5:
            report["skipped"].append(dict(kind=phase, reason=f"whole-run budget spent ({left:.0f} s left)"))
            continue
        spec = dict(base, deadline=phase_deadline)
        if phase == "official":
            spec.update(official_src=src, sizes=s["sizes"], esm_model=s["esm_model"], cases=cases["official"],
                        official_warmup_steps=s["official_warmup_steps"])
            runs = [(args.official_python, "official", spec, worker_env(), "official")]
        elif phase in ("ours_f32", "ours_bf16"):
            prec = "float32" if phase == "ours_f32" else "bfloat16"
            spec.update(arch=cfg_dict, precision_mode=prec, cases=cases[phase])
            if not spec["cases"]:
                continue
            runs = [(args.ours_python, "ours", spec, worker_env(), phase)]
        else:
            runs = None
        if runs:
            for python, kind, sp, env, tag in runs:
                res, rc, killed = run_worker(python, kind, sp, work, log, env, tag)
                report["results"] += res
                report["workers"][tag] = dict(returncode=rc, stopped_at_deadline=killed, results=len(res))
                done = {(r.get("of", r.get("kind")), r.get("precision"), r.get("L"), r.get("B")) for r in res}
                om = _find(res, kind="official_model")
                if om is not None:
                    theirs = A.FoldingConfig.from_official(om["summary"]).to_dict()
                    diff = sorted(k for k in cfg_dict if k not in ("name", "dtype") and cfg_dict[k] != theirs.get(k))
                    report["official"]["config_matches_ours"] = not diff
                    report["official"]["config_differences"] = diff
                    log(f"official architecture {'matches' if not diff else 'DIFFERS from'} ours" + (f": {diff}" if diff else ""))
                for c in sp["cases"]:
                    if (c["kind"], c.get("precision"), c.get("L"), c.get("B")) not in done:
                        report["skipped"].append(dict(c, side=kind, reason="worker ended before this case "
                                                      f"(exit {rc}{', stopped at its deadline' if killed else ''})"))
            save()
            continue
        # the probe: restart a dead worker with the bracket found so far
        pcfg = ours_config(A, s["probe_sizes"], s["probe_arch"], s["esm_model"]).to_dict()
        lo, hi, tries = 0, None, []
        mfu = dict(kind="mfu", precision="bfloat16", model=s["probe_arch"], L=s["mfu_length"], B=1)
        for attempt in range(3):
            sp = dict(base, deadline=phase_deadline, probe_config=pcfg, lo=lo, hi=hi, start=s["probe_start"],
                      max=s["probe_max"], resolution=s["probe_resolution"], limit_mib=s["probe_limit_mib"],
                      steps=s["probe_steps"], mfu=mfu if attempt == 0 else None,
                      die_at=args.probe_die_at if attempt == 0 else None)
            env = worker_env({"XLA_PYTHON_CLIENT_MEM_FRACTION": "0.92"})
            res, rc, killed = run_worker(args.ours_python, "probe", sp, work, log, env, f"probe{attempt}")
            report["results"] += [r for r in res if r.get("kind") != "probe_try"]
            report["workers"][f"probe{attempt}"] = dict(returncode=rc, stopped_at_deadline=killed, results=len(res))
            pending = None
            finished = None
            for r in res:
                if r["kind"] == "probe_try":
                    pending = r["L"]
                elif r["kind"] == "probe":
                    pending = None
                    tries.append(r)
                    if r["fits"]:
                        lo = max(lo, r["L"])
                    else:
                        hi = r["L"] if hi is None else min(hi, r["L"])
                elif r["kind"] == "probe_done":
                    finished = r
            if finished is not None or killed:
                report["probe"] = dict(model=s["probe_arch"], config=pcfg, largest_fitting_L=lo or None,
                                       smallest_failing_L=hi, tries=tries,
                                       reason=(finished or {}).get("reason", "probe worker stopped at its deadline"))
                break
            if pending is not None:
                tries.append(dict(kind="probe", L=pending, fits=False, why=f"probe worker died (exit {rc}) on this L"))
                hi = pending if hi is None else min(hi, pending)
                log(f"probe worker died on L = {pending}; restarting with bracket ({lo}, {hi})")
                continue
            report["probe"] = dict(model=s["probe_arch"], config=pcfg, largest_fitting_L=lo or None,
                                   smallest_failing_L=hi, tries=tries, reason=f"probe worker ended (exit {rc})")
            break
        save()

    report["finished"] = time.time()
    save()
    log(markdown(report))
    log(f"wrote {out / JSON_NAME} and {out / MD_NAME} in {time.time() - t_start:.0f} s")
    return 0


# ======================================================================================
# Report
# ======================================================================================
def _f(x, spec=".1f", na="–"):
    return na if x is None else format(x, spec)


def _peak_mib(r) -> str:
    """Peak memory of a case: the device's, else ≤ the process's peak RSS so far (CPU)."""
    r = r or {}
    if r.get("peak_bytes") is not None:
        return _f(_mib(r["peak_bytes"]), ".0f")
    if r.get("process_peak_rss_bytes") is not None:
        return "≤ " + _f(_mib(r["process_peak_rss_bytes"]), ".0f")
    return "–"


def _mib(b):
    return None if b is None else b / 2**20


def _find(results, **kw):
    for r in results:
        if all(r.get(k) == v for k, v in kw.items()):
            return r
    return None


def markdown(rep: dict) -> str:
    s, res = rep["settings"], rep["results"]
    m = rep["machine"]
    off_info = _find(res, kind="info", side="official") or {}
    our_info = _find(res, kind="info", side="ours") or {}
    smoke = rep["mode"] == "smoke"
    L = []
    title = "SMOKE run (tiny sizes; not a benchmark)" if smoke else "FoldingDiT-100M and simplefold_3B-shaped, random weights"
    L.append(f"# Official PyTorch SimpleFold vs simplefold (JAX): {title}\n")
    L.append(f"- date: {m['date']}; host {m['hostname']} ({m['platform']}, {m['cpus']} CPUs)")
    L.append(f"- CPU: {m.get('cpu_model', '?')}; flags: {' '.join(m.get('cpu_flags') or []) or 'none of interest'} "
             f"(no amx_bf16: bf16 products run on AVX-512 BF16 or the float32 units); threads: {m.get('cpu_threads', '?')} "
             f"(JAX/XLA: all; torch: {off_info.get('torch_threads', '–')})"
             if "amx_bf16" not in (m.get("cpu_flags") or []) else
             f"- CPU: {m.get('cpu_model', '?')}; flags: {' '.join(m['cpu_flags'])}; threads: {m.get('cpu_threads', '?')} "
             f"(JAX/XLA: all; torch: {off_info.get('torch_threads', '–')})")
    L.append(f"- GPU (nvidia-smi): {m.get('nvidia_smi') or 'none'}; torch device: {off_info.get('device', '–')}; "
             f"JAX device: {our_info.get('device', '–')} ({our_info.get('backend', '–')})")
    v = m["versions"]
    L.append(f"- versions: python {m['python']}, numpy {v.get('numpy')}, jax {v.get('jax')}, jaxlib {v.get('jaxlib')}, "
             f"flax {v.get('flax')}; torch {off_info.get('torch', '–')} (CUDA {off_info.get('torch_cuda', '–')}); "
             f"official commit {off_info.get('official_commit', '–')}; simplefold {m.get('simplefold_commit') or '–'}")
    o = rep["official"] or {}
    L.append(f"- official side: {'ran' if o.get('available') else 'SKIPPED'} ({o.get('reason')})"
             + (f"; placeholder modules: {', '.join(off_info['stubbed_modules'])}" if off_info.get("stubbed_modules") else ""))
    L.append(f"- float32 matmuls: {s['f32_matmul']} on both sides; timings: median of {s['reps']} synchronised calls "
             f"after {s['warmup']} warm-up calls; sampler tau {s['tau']}")
    L.append("")
    L.append("## Forward: ms per call\n")
    L.append("| precision | L | N atoms | B | official ms | ours ms | official / ours | official peak MiB | ours peak MiB "
             "| parity err/tol v, latent (f32) · rel L2 vs official f32 (bf16) |")
    L.append("|---|---|---|---|---|---|---|---|---|---|")
    for prec in s["precisions"]:
        for b in s["batches"]:
            for length in s["lengths"]:
                oo = _find(res, kind="forward", side="official", precision=prec, L=length, B=b)
                uu = _find(res, kind="forward", side="ours", precision=prec, L=length, B=b)
                if oo is None and uu is None:
                    continue
                n = (uu or oo).get("N")
                ratio = oo["median_ms"] / uu["median_ms"] if oo and uu else None
                if prec == "float32":
                    e = (uu or {}).get("err_over_tol")
                    par = f"{_f(e['predict_velocity'], '.3g')}, {_f(e['latent'], '.3g')}" if e else "–"
                else:
                    eu = (uu or {}).get("rel_l2_vs_official_f32")
                    eo = (oo or {}).get("rel_l2_vs_official_f32")
                    par = (f"ours {_f(eu['predict_velocity'], '.2e')}, {_f(eu['latent'], '.2e')}" if eu else "ours –") + (
                        f"; official {_f(eo['predict_velocity'], '.2e')}, {_f(eo['latent'], '.2e')}" if eo else "")
                L.append(f"| {prec} | {length} | {n} | {b} | {_f((oo or {}).get('median_ms'), '.2f')} | "
                         f"{_f((uu or {}).get('median_ms'), '.2f')} | {_f(ratio, '.2f')} | "
                         f"{_peak_mib(oo)} | {_peak_mib(uu)} | {par} |")
    L.append("")
    L.append(f"## Whole {s['steps']}-step sample, one sample: seconds\n")
    L.append(f"One timed run each, tau {s['tau']}: official after a {s['official_warmup_steps']}-step warm-up run, "
             "ours after the compiling first run.\n")
    L.append("Official: float32 (its CLI's setting); ours: float32 and, where run, the bf16 mixed mode.\n")
    L.append("| L | N atoms | official f32 s | ours precision | ours s | official / ours | ours compile + first run s | official peak MiB | ours peak MiB |")
    L.append("|---|---|---|---|---|---|---|---|---|")
    for length in s["sample_lengths"]:
        oo = _find(res, kind="sample", side="official", L=length)
        for prec in ("float32", "bfloat16"):
            uu = _find(res, kind="sample", side="ours", L=length, precision=prec)
            if uu is None and (prec == "bfloat16" or oo is None):
                continue
            ratio = oo["wall_s"] / uu["wall_s"] if oo and uu else None
            L.append(f"| {length} | {(uu or oo).get('N')} | {_f((oo or {}).get('wall_s'), '.2f')} | {prec} | "
                     f"{_f((uu or {}).get('wall_s'), '.2f')} | {_f(ratio, '.2f')} | {_f((uu or {}).get('first_call_s'), '.1f')} | "
                     f"{_peak_mib(oo)} | {_peak_mib(uu)} |")
    L.append("")
    L.append(f"## Trunk alone, bf16, L = {s['mfu_length']} (ours): FLOPs from the config vs {s['peak_tflops']:.0f} TFLOP/s\n")
    L.append("| model | B | ms | GFLOP per call | TFLOP/s | MFU |")
    L.append("|---|---|---|---|---|---|")
    for r in res:
        if r.get("kind") == "mfu":
            L.append(f"| {r['model']} | {r['B']} | {_f(r['median_ms'], '.2f')} | {_f(r['flops'] / 1e9, '.4g')} | "
                     f"{_f(r['tflops_per_s'], '.3g')} | {_f(r['mfu'] and 100 * r['mfu'], '.1f')}{' %' if r.get('mfu') else ' (no GPU)'} |")
    L.append("")
    p = rep.get("probe")
    L.append(f"## Largest L for one sample, {s['probe_arch']}-shaped, bf16 (ours)\n")
    if p and not p["tries"]:
        L.append(f"- no probe ran ({p.get('reason')})")
    elif p:
        fits, fails = p.get("largest_fitting_L"), p.get("smallest_failing_L")
        L.append(f"- fits: L = {fits if fits else 'none (the smallest probe failed)'}; does not fit: "
                 f"L = {fails if fails else '– (none failed)'} ({p.get('reason')})")
        L.append("- probes: " + ", ".join(
            f"{t['L']} {'fits' if t['fits'] else 'no'}{' (worker died)' if 'died' in t.get('why', '') else ''}"
            for t in p["tries"]))
        pm = _find(res, kind="probe_model")
        if pm:
            L.append(f"- model: {pm['params'] / 1e6:,.1f} M parameters, {pm['param_bytes'] / 2**20:,.0f} MiB on the device")
    else:
        L.append("- not run")
    L.append("")
    # goals of issue 17
    L.append("## Goals (issue 17)" + (": not assessed by a smoke run (sizes differ; values for the code path only)\n" if smoke else "\n"))
    ratios = [(length, _find(res, kind="sample", side="official", L=length),
               _find(res, kind="sample", side="ours", L=length, precision="float32"))
              for length in s["sample_lengths"]]
    rs = [(length, a["wall_s"] / b["wall_s"]) for length, a, b in ratios if a and b]
    L.append(f"- ours ≥ 3× the official per {s['steps']}-step sample at L = {', '.join(map(str, s['sample_lengths']))}: "
             + (("yes" if all(r >= 3 for _, r in rs) and len(rs) == len(ratios) else "NO") + " ("
                + ", ".join(f"L={length}: {r:.2f}×" for length, r in rs) + ")" if rs else "not measured"))
    mf = [r for r in res if r.get("kind") == "mfu" and r.get("mfu") is not None]
    L.append(f"- bf16 trunk ≥ 40 % MFU at L = {s['mfu_length']}: "
             + (", ".join(f"{r['model']} B={r['B']}: {100 * r['mfu']:.1f} %" for r in mf) if mf else "not measured (no GPU)"))
    pars = [max(r["err_over_tol"].values()) for r in res if r.get("kind") == "forward" and r.get("err_over_tol")]
    L.append("- parity in float32 (err/tol ≤ 1): "
             + (f"{'yes' if max(pars) <= 1 else 'NO'} (max err/tol {max(pars):.3g} over {len(pars)} cases)" if pars else "not measured"))
    L.append("")
    errs = [r for r in res if r.get("kind") == "error"]
    if errs:
        L.append("## Errors\n")
        for r in errs:
            L.append(f"- {r.get('side')} {r.get('of')} {r.get('precision', '')} L={r.get('L')} B={r.get('B')}: {r['error'][:300]}")
        L.append("")
    sk = rep["skipped"] + [r for r in res if r.get("kind") == "skipped"]
    if sk:
        L.append("## Skipped\n")
        for r in sk:
            what = r.get("of", r.get("kind"))
            L.append(f"- {r.get('side', '')} {what} {r.get('precision', '')} L={r.get('L', '–')} B={r.get('B', '–')}: {r['reason']}")
        L.append("")
    L.append(f"Elapsed {rep.get('elapsed_s', 0):.0f} s of a {s['budget_s']:.0f} s budget. Ours peak MiB = bytes live "
             "before the call + XLA's temporaries and outputs of the call (JAX cannot reset its peak counter; "
             "the cumulative counter is in the JSON); official peak = torch.cuda.max_memory_allocated. "
             "On a CPU neither exists: \"≤ X\" is the worker process's peak RSS when the case ended (monotone over "
             "its earlier cases, so an upper bound).")
    return "\n".join(L) + "\n"


if __name__ == "__main__":
    sys.exit(main())
