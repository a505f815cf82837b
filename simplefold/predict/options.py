"""Settings of a fold run (:class:`FoldOptions`) and the run defaults shared by the API and the CLI."""

from __future__ import annotations

import dataclasses

from simplefold import features as F
from simplefold.model.precision import DEFAULT_PRECISION, check_precision

DEFAULT_SEED = 42  # the official CLI's default
DEFAULT_NUM_SAMPLES = 1


@dataclasses.dataclass(frozen=True)
class FoldOptions:
    """Settings of a fold run (sampler settings default to :class:`simplefold.sampling.sampler.SamplerConfig`).

    Attributes:
      num_samples: structures per target (S).
      seed: base seed; sample k of target t uses a key derived from (seed, t.name, k).
      num_steps, tau: sampler steps and noise scale; None = the SamplerConfig default.
      plddt: compute pLDDT (needs a pLDDT head, see the module docstring).
      batch_size: at most this many samples per network call (over all devices); None = as many
        as the memory budget allows.
      max_memory_gb: memory budget per device in GB (1e9 bytes); None =
        :func:`simplefold.predict.planning.default_memory_budget`.
      token_buckets: residue-count buckets (see :func:`simplefold.features.bucket_size`).
      precision: "float32" (faithful) or "bfloat16" (mixed; see :mod:`simplefold.model.precision`).
    """

    num_samples: int = DEFAULT_NUM_SAMPLES
    seed: int = DEFAULT_SEED
    num_steps: int | None = None
    tau: float | None = None
    plddt: bool = True
    batch_size: int | None = None
    max_memory_gb: float | None = None
    token_buckets: tuple[int, ...] = F.TOKEN_BUCKETS
    precision: str = DEFAULT_PRECISION

    def __post_init__(self):
        if self.num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {self.num_samples}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.max_memory_gb is not None and self.max_memory_gb <= 0:
            raise ValueError(f"max_memory_gb must be > 0, got {self.max_memory_gb}")
        check_precision(self.precision)
        self.sampler_config()  # validates num_steps / tau

    def sampler_config(self):
        """The :class:`simplefold.sampling.sampler.SamplerConfig` of this run."""
        from simplefold.sampling.sampler import SamplerConfig

        over = {k: v for k, v in (("num_steps", self.num_steps), ("tau", self.tau)) if v is not None}
        return SamplerConfig(**over)

