"""simplefold.predict.planning: parameter counts, memory and time estimates, per-target plans."""

from __future__ import annotations

import dataclasses
import math

import pytest

from simplefold.predict.loading import ModelNotFoundError, model_config
from simplefold.predict.options import FoldOptions
from simplefold.predict.planning import count_parameters, estimate_memory, format_plan, plan, plan_target
from simplefold.predict.targets import Target

SEQ_A = "MKTAYIAKQRQISFVKSHFSRQ"  # 22 residues -> bucket 32


def test_parameter_count_matches_official_sizes():
    from simplefold.model import FoldingConfig

    # official counts from instantiating the PyTorch models
    # (apple/ml-simplefold src/simplefold/model/torch/architecture.py)
    assert count_parameters(FoldingConfig.simplefold_100M()) == pytest.approx(96_680_488, rel=1e-3)
    assert count_parameters(FoldingConfig.simplefold_1_6B()) == pytest.approx(1_588_589_864, rel=1e-3)
    assert count_parameters(FoldingConfig.simplefold_3B()) == pytest.approx(2_864_973_224, rel=1e-3)


def test_plan_respects_budget_batch_size_and_devices():
    from simplefold.model import FoldingConfig

    cfg = FoldingConfig.simplefold_100M()
    t = Target("t", "A" * 300)
    opts = FoldOptions(num_samples=10, num_steps=100, plddt=False)
    big = plan_target(t, cfg, opts, budget=80 * 10**9)
    assert big.bucket_tokens == 320 and big.chunk == 10 and big.num_chunks == 1 and big.error is None
    est = estimate_memory(cfg, big.bucket_tokens, big.bucket_atoms, 1)
    assert [p.name for p in est.phases] == ["esm", "sampling"]  # no pLDDT phase with plddt off
    # the ESM phase (batch-independent) alone decides whether the target runs at all
    assert plan_target(t, cfg, opts, budget=est.phase("esm").total(1) - 1).chunk == 0
    # without the ESM phase (embedding-conditioned), the sampling phase's per-sample bytes set the chunk
    cfg = dataclasses.replace(cfg, condition="embedding")
    est = estimate_memory(cfg, big.bucket_tokens, big.bucket_atoms, 1)
    sampling = est.phase("sampling")
    budget = sampling.weights + sampling.base + sampling.work + 3 * sampling.per_sample + 1
    small = plan_target(t, cfg, opts, budget=budget)
    assert small.chunk == 3 and small.num_chunks == 4 and small.memory_bytes <= budget
    assert plan_target(t, cfg, dataclasses.replace(opts, batch_size=2), budget=80 * 10**9).chunk == 2
    # 3 devices: per-device chunk rounded up, total a multiple of 3
    assert plan_target(t, cfg, opts, budget=80 * 10**9, num_devices=3).chunk == 12
    # too long for the budget: an error naming the target, not an exception
    huge = plan_target(Target("huge", "A" * 3000), cfg, opts, budget=2 * 10**9)
    assert huge.chunk == 0 and "huge" in huge.error and "memory budget" in huge.error
    # time estimate grows with steps and samples
    assert plan_target(t, cfg, dataclasses.replace(opts, num_steps=200), budget=10**11).seconds == pytest.approx(
        2 * big.seconds, rel=0.05
    )


def test_plan_reads_only_configs(tmp_path, monkeypatch):
    """plan() on a released name needs no weights (the weights manager must not be touched)."""
    from simplefold.weights import cache

    def boom(*a, **k):
        raise AssertionError("plan() tried to resolve weights")

    monkeypatch.setattr(cache, "resolve", boom)
    plans = plan([("a", SEQ_A), ("bad", "")], "simplefold_3B", FoldOptions(num_samples=2, max_memory_gb=100))
    assert plans[0].error is None and plans[0].memory_bytes > 4 * 2.8e9  # 3B weights in float32
    assert [name for name, _ in plans[0].phase_bytes] == ["esm", "sampling", "plddt"]
    assert "empty sequence" in plans[1].error
    table = format_plan(plans)
    assert "a " in table and "FAILS" in table and "2 targets, 1 would fail" in table
    with pytest.raises(ModelNotFoundError, match="unknown model"):
        plan([SEQ_A], "simplefold_42M")


def test_memory_counts_every_network_from_its_config(tiny_model_dir):
    """The ESM2 encoder and the pLDDT pair are sized from their own configs (the model's own head
    for a converted directory, the 1.6B latent + official head for released models), each in its phase."""
    from simplefold.model import FoldingConfig, PLDDTConfig
    from simplefold.model.esm2 import ESM2_CONFIGS
    from simplefold.predict.planning import parameter_bytes

    cfg = FoldingConfig.simplefold_100M()
    esm_3b = count_parameters(ESM2_CONFIGS["esm2_t36_3B_UR50D"])
    # fair-esm's 2.838e9 for ESM2-3B also counts the language-model head, which is not loaded
    assert 2.83e9 < esm_3b < 2.838e9
    est = estimate_memory(cfg, 32, 256)
    # float16 kernels (2 bytes) dominate: between 2 and 2.1 bytes per parameter
    assert 2 * esm_3b < est.phase("esm").weights < 2.1 * esm_3b
    assert est.phase("sampling").weights == 4 * count_parameters(cfg)
    official = plan([SEQ_A], "simplefold_100M", FoldOptions(max_memory_gb=100))[0]
    latent, head = FoldingConfig.simplefold_1_6B(), PLDDTConfig.plddt_1_6B()
    with_pair = estimate_memory(cfg, 32, 256, plddt=True, plddt_latent_cfg=latent, plddt_head_cfg=head)
    assert with_pair.phase("plddt").weights == 4 * (count_parameters(latent) + count_parameters(head))
    # the largest phase, not the sum: the 1.6B pLDDT phase, not ESM + 100M + 1.6B
    assert official.memory_bytes == with_pair.total == with_pair.phase("plddt").total(1)
    assert with_pair.total < sum(p.total(1) for p in with_pair.phases)
    bf16 = estimate_memory(cfg, 32, 256, plddt=True, plddt_latent_cfg=latent, plddt_head_cfg=head,
                           precision="bfloat16")
    assert bf16.phase("plddt").weights == parameter_bytes(latent, "bfloat16") + parameter_bytes(head, "bfloat16")
    assert bf16.phase("plddt").weights < 0.55 * with_pair.phase("plddt").weights
    own = plan([SEQ_A], str(tiny_model_dir), FoldOptions(max_memory_gb=100))[0]
    no_head = plan([SEQ_A], str(tiny_model_dir), FoldOptions(max_memory_gb=100, plddt=False))[0]
    assert dict(no_head.phase_bytes).keys() == {"sampling"}  # embedding-conditioned: no ESM phase
    own_cfg = model_config(str(tiny_model_dir))
    # the own head reads the folding network's latent: both resident in the pLDDT phase
    assert dict(own.phase_bytes)["plddt"] >= 4 * (count_parameters(own_cfg) + count_parameters(PLDDTConfig.tiny()))


def test_phase_figures_match_hand_computed_values():
    """Weights and activations of each phase against sums done by hand for small configs."""
    from flax import nnx

    from simplefold.model import FoldingConfig, FoldingDiT
    from simplefold.model.esm2 import ESM2Config
    from simplefold.predict import planning
    from simplefold.sampling import sampler

    esm = ESM2Config(num_layers=2, embed_dim=64, attention_heads=4)  # ffn 256, 33 tokens
    # per layer 4 kernels 64x64 + fc1 64x256 + fc2 256x64 (float16), biases and norms float32
    kernels = 2 * (4 * 64 * 64 + 2 * 64 * 256)
    others = 33 * 64 + 2 * 64 + 2 * (256 + 64 + 4 * 64 + 2 * 2 * 64)
    assert planning.count_parameters(esm) == kernels + others
    assert planning.parameter_bytes(esm) == 2 * kernels + 4 * others
    assert planning.parameter_bytes(esm, kernel_bytes=4) == 4 * (kernels + others)
    # ESM activations at 30 residues: T = 64 (32 + <cls><eos> rounded to 64), 3 representations
    t, d, f, h = 64, 64, 256, 4
    act = 4 * (2 * t * 3 * d + 2.0 * (t * (8 * d + 2 * f) + 2 * h * t * t) + d * f)
    assert planning._esm_activation_bytes(esm, 30) == int(act)
    e = planning.estimate_memory(dataclasses.replace(FoldingConfig.simplefold_100M()), 32, 256).phase("esm")
    # ESM2-3B's float16 checkpoint is read as stored: 0.35 of the 1 GB in flight
    assert e.load == int(0.35 * 1e9) and e.total(1) == e.weights + e.base + max(e.load, e.work)

    cfg = FoldingConfig.simplefold_100M()
    abstract = nnx.eval_shape(lambda: FoldingDiT(cfg, rngs=nnx.Rngs(0)))
    n_kernel = sum(math.prod(v.get_value().shape) for p, v in nnx.to_flat_state(nnx.state(abstract, nnx.Param))
                   if p[-1] == "kernel")
    total = planning.count_parameters(cfg)
    assert planning.parameter_bytes(cfg, "bfloat16") == 2 * n_kernel + 4 * (total - n_kernel)
    assert n_kernel > 0.9 * total  # the kernels are what bf16 storage halves
    m, n = 256, 2048
    est = planning.estimate_memory(cfg, m, n, 2)
    s = est.phase("sampling")
    feats = planning._feature_bytes(m, n, cfg.esm_num_layers, cfg.esm_dim)
    shared = sampler.estimate_sample_memory(cfg, n, m, 0)
    assert s.weights == 4 * total
    assert s.base == planning.RUNTIME_BYTES and s.work == feats + shared
    assert s.per_sample == sampler.estimate_sample_memory(cfg, n, m, 1) - shared + 4 * n * 3 * 6
    # float32 restored in place: 0.35 of the 387 MB checkpoint in flight, or a share of the
    # largest array (the 8 x 768 x 4608 stacked kernel, 113 MB), whichever is larger;
    # bfloat16: the float32 read buffers
    largest = 4 * 8 * 768 * 4608
    assert planning.largest_parameter_bytes(cfg) == largest
    assert s.load == max(int(0.35 * 4 * total), int(0.65 * largest))
    assert planning.estimate_memory(cfg, m, n, precision="bfloat16").phase("sampling").load == 4 * total
    # the 1.6B trunk's 2.04 GB stacked kernel bounds its load (measured 1.27 GB over the weights)
    big = planning.largest_parameter_bytes(FoldingConfig.simplefold_1_6B())
    assert big == 4 * 36 * 1536 * 9216 and planning._load_transient(int(6.4e9), False, big) == int(0.65 * big)
    # on CPU float32 copies of a fraction of the bf16 kernels are counted (4 bytes per kernel entry)
    cpu = planning.estimate_memory(cfg, m, n, precision="bfloat16", widen_bf16_kernels=True).phase("sampling")
    assert cpu.work - s.work == int(planning.WIDENED_KERNEL_FRACTION * 4 * n_kernel)
    assert s.total(2) == s.weights + s.base + max(s.load, s.work + 2 * s.per_sample)
    assert est.total == max(est.phase("esm").total(2), s.total(2))
    # max_batch: the sampling phase's free memory over its per-sample bytes
    budget = s.weights + s.base + s.work + 5 * s.per_sample + 7
    assert est.max_batch(max(budget, est.phase("esm").total(1))) >= 5
    assert est.max_batch(est.phase("esm").total(1) - 1) == 0  # the ESM phase alone does not fit


def test_default_budget_is_available_memory_minus_headroom(monkeypatch):
    import jax

    from simplefold.predict import planning

    monkeypatch.setattr(planning, "available_host_memory", lambda: 20 * 10**9)
    cpu = jax.devices("cpu")
    assert planning.default_memory_budget(cpu) == 20 * 10**9 - planning.HOST_MEMORY_HEADROOM


def test_available_host_memory_reads_meminfo():
    from simplefold.predict import planning
    from simplefold.utils.memory import current_rss

    with open("/proc/meminfo", encoding="ascii") as f:
        avail = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    got = planning.available_host_memory()
    # MemAvailable moves with the other programs: within 1 GB of the value read just before
    assert abs(got - avail - current_rss()) < 10**9
