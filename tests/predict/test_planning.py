"""simplefold.predict.planning: parameter counts, memory and time estimates, per-target plans."""

from __future__ import annotations

import dataclasses

import pytest

from simplefold.predict.loading import ModelNotFoundError
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
    budget = est.params + est.features + 3 * est.per_sample + 1
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
    assert "empty sequence" in plans[1].error
    table = format_plan(plans)
    assert "a " in table and "FAILS" in table and "2 targets, 1 would fail" in table
    with pytest.raises(ModelNotFoundError, match="unknown model"):
        plan([SEQ_A], "simplefold_42M")


def test_memory_counts_every_network_from_its_config(tiny_model_dir):
    """The ESM2 encoder and the pLDDT pair are sized from their own configs (the model's own head
    for a converted directory, the 1.6B latent + official head for released models)."""
    from simplefold.model import FoldingConfig, PLDDTConfig
    from simplefold.model.esm2 import ESM2_CONFIGS

    cfg = FoldingConfig.simplefold_100M()
    esm_3b = count_parameters(ESM2_CONFIGS["esm2_t36_3B_UR50D"])
    # fair-esm's 2.838e9 for ESM2-3B also counts the language-model head, which is not loaded
    assert 2.83e9 < esm_3b < 2.838e9
    assert estimate_memory(cfg, 32, 256).params == 4 * (count_parameters(cfg) + esm_3b)
    official = plan([SEQ_A], "simplefold_100M", FoldOptions(max_memory_gb=100))[0]
    latent, head = FoldingConfig.simplefold_1_6B(), PLDDTConfig.plddt_1_6B()
    with_pair = estimate_memory(cfg, 32, 256, plddt=True, plddt_latent_cfg=latent, plddt_head_cfg=head)
    assert with_pair.params == 4 * (count_parameters(cfg) + esm_3b + count_parameters(latent) + count_parameters(head))
    assert official.memory_bytes == with_pair.total
    own = plan([SEQ_A], str(tiny_model_dir), FoldOptions(max_memory_gb=100))[0]
    no_head = plan([SEQ_A], str(tiny_model_dir), FoldOptions(max_memory_gb=100, plddt=False))[0]
    assert own.memory_bytes - no_head.memory_bytes == 4 * count_parameters(PLDDTConfig.tiny())
