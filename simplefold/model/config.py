"""Frozen configs of the SimpleFold folding network (``FoldingConfig``) and pLDDT head (``PLDDTConfig``).

Sizes follow the official ``configs/model/architecture/foldingdit_*.yaml`` of apple/ml-simplefold. Every
default lives here, once.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from simplefold.constants import (
    ATOM_WINDOW,
    ESM_DIM,
    ESM_NUM_REPRESENTATIONS,
    NUM_ATOM_NAME_CHARS,
    NUM_CHAR_CLASSES,
    NUM_ELEMENT_CLASSES,
    NUM_MOL_TYPES,
    NUM_POCKET_CLASSES,
    NUM_RES_TYPES,
    PLDDT_NUM_BINS,
)

_DTYPES = ("float32", "bfloat16")
_CONDITIONS = ("esm", "embedding")

# keys per block of the dense (token) attention's value product (see layers.dense_attention)
ATTENTION_KEY_BLOCK = 128


def swiglu_hidden(width: int, mlp_ratio: float, multiple_of: int = 256) -> int:
    """Official SwiGLU hidden size: int(2/3 * int(width*ratio)) rounded up to ``multiple_of``."""
    hidden = int(2 * int(width * mlp_ratio) / 3)
    return multiple_of * ((hidden + multiple_of - 1) // multiple_of)


# optional keys of an official model ``summary`` -> (FoldingConfig field, type)
_OFFICIAL_OPTIONAL_KEYS = {
    "esm_num_layers": ("esm_num_layers", int),
    "esm_s_dim": ("esm_dim", int),
    "atom_n_queries": ("n_queries", int),
    "atom_n_keys": ("n_keys", int),
    "mlp_ratio": ("mlp_ratio", float),
    "rope_base": ("rope_base", float),
    "fourier_num_freqs": ("fourier_num_freqs", int),
    "fourier_max_freq_log2": ("fourier_max_freq_log2", float),
    "output_channels": ("output_channels", int),
}


def _from_dict(cls, d: dict[str, Any]):
    """Inverse of a config's ``to_dict`` (the ``kind`` tag is dropped); unknown keys are an error."""
    d = {k: v for k, v in d.items() if k != "kind"}
    unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys: {sorted(unknown)}")
    return cls(**d)


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class FoldingConfig:
    """Hyper-parameters of ``FoldingDiT``.

    ``condition="esm"`` reads ``esm_s`` (B,M,esm_num_layers,esm_dim) as the official model does;
    ``condition="embedding"`` replaces the softmax-mixed ESM features by a learned (33, esm_dim)
    residue-type embedding of ``res_type`` and is otherwise the same network (used by small demo
    models trained without a protein language model).

    ``dtype`` is the compute dtype of the dense layers and attention; parameters are float32.
    """

    name: str = "custom"
    hidden_size: int
    num_heads: int
    depth: int
    atom_hidden_size: int
    atom_num_heads: int
    atom_encoder_depth: int
    atom_decoder_depth: int
    esm_num_layers: int = ESM_NUM_REPRESENTATIONS
    esm_dim: int = ESM_DIM
    n_queries: int = ATOM_WINDOW
    n_keys: int = 128
    mlp_ratio: float = 4.0
    rope_base: float = 100.0
    rope_in_dim: int = 4
    fourier_num_freqs: int = 128
    fourier_min_freq_log2: float = 0.0
    fourier_max_freq_log2: float = 12.0
    time_embed_dim: int = 256
    time_max_period: float = 10000.0
    abs_pe_max_wavelength: float = 224.0  # omega = pi * 2^linspace(0, log2(224)-1, D/2)
    output_channels: int = 3
    condition: Literal["esm", "embedding"] = "esm"
    dtype: Literal["float32", "bfloat16"] = "float32"

    def __post_init__(self):
        _check_choice("condition", self.condition, _CONDITIONS)
        _check_choice("dtype", self.dtype, _DTYPES)
        for w, h, what in ((self.hidden_size, self.num_heads, "trunk"), (self.atom_hidden_size, self.atom_num_heads, "atom")):
            if w % h or (w // h) % (2 * self.rope_in_dim):
                raise ValueError(f"{what} width {w} / {h} heads must give a head dim divisible by {2 * self.rope_in_dim}")
        if self.hidden_size % 2:
            raise ValueError("hidden_size must be even (absolute PE uses D/2 frequencies)")
        if self.n_keys < self.n_queries or (self.n_keys - self.n_queries) % 2:
            raise ValueError("n_keys must be >= n_queries with an even difference")

    # ---- derived sizes ----
    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def atom_head_dim(self) -> int:
        return self.atom_hidden_size // self.atom_num_heads

    @property
    def trunk_mlp_hidden(self) -> int:
        return swiglu_hidden(self.hidden_size, self.mlp_ratio)

    @property
    def atom_mlp_hidden(self) -> int:
        return swiglu_hidden(self.atom_hidden_size, self.mlp_ratio)

    @property
    def fourier_dim(self) -> int:
        return 3 + 3 * 2 * self.fourier_num_freqs

    @property
    def atom_feat_dim(self) -> int:
        """Width of the atom features ``FoldingDiT`` concatenates (as the official ``architecture.py``):
        D + 1199 for 128 frequencies."""
        res = NUM_MOL_TYPES + NUM_RES_TYPES + NUM_POCKET_CLASSES
        return (self.fourier_dim + res + (self.hidden_size + 1) + 1 + 1 + NUM_ELEMENT_CLASSES
                + NUM_ATOM_NAME_CHARS * NUM_CHAR_CLASSES)

    # ---- named sizes (official YAMLs) ----
    @classmethod
    def simplefold_100M(cls, **overrides) -> "FoldingConfig":
        return cls._make("simplefold_100M", 768, 12, 8, 256, 4, 1, 1, overrides)

    @classmethod
    def simplefold_360M(cls, **overrides) -> "FoldingConfig":
        return cls._make("simplefold_360M", 1024, 16, 18, 256, 4, 2, 2, overrides)

    @classmethod
    def simplefold_700M(cls, **overrides) -> "FoldingConfig":
        return cls._make("simplefold_700M", 1152, 16, 28, 256, 4, 2, 2, overrides)

    @classmethod
    def simplefold_1_1B(cls, **overrides) -> "FoldingConfig":
        return cls._make("simplefold_1.1B", 1280, 20, 36, 384, 6, 2, 2, overrides)

    @classmethod
    def simplefold_1_6B(cls, **overrides) -> "FoldingConfig":
        return cls._make("simplefold_1.6B", 1536, 24, 36, 512, 8, 3, 3, overrides)

    @classmethod
    def simplefold_3B(cls, **overrides) -> "FoldingConfig":
        return cls._make("simplefold_3B", 2048, 32, 36, 640, 10, 4, 4, overrides)

    @classmethod
    def tiny(cls, **overrides) -> "FoldingConfig":
        """~1.2M parameters; residue-type embedding conditioning (no ESM needed). For tests/CPU demos."""
        base = dict(condition="embedding", esm_dim=64, esm_num_layers=1)
        base.update(overrides)
        return cls._make("tiny", 128, 4, 2, 64, 2, 1, 1, base)

    @classmethod
    def _make(cls, name, d, h, depth, da, ha, enc, dec, overrides) -> "FoldingConfig":
        kw = dict(
            name=name, hidden_size=d, num_heads=h, depth=depth, atom_hidden_size=da, atom_num_heads=ha,
            atom_encoder_depth=enc, atom_decoder_depth=dec,
        )
        kw.update(overrides)
        return cls(**kw)

    @classmethod
    def from_official(cls, summary: dict[str, Any], **overrides) -> "FoldingConfig":
        """Build from the ``summary`` dict of an official-model json (e.g. ``folding_d64_h4.json``).

        Raises:
          ValueError: the summary describes something this port does not implement, or its
            derived sizes (head dims, SwiGLU widths) disagree with the official formulas.
        """
        s = dict(summary)
        if s.get("atom_hidden_size_enc") != s.get("atom_hidden_size_dec"):
            raise ValueError("atom encoder and decoder widths differ; not supported")
        for key, want in (("use_swiglu", True), ("use_length_condition", True), ("rope_in_dim", 4)):
            if key in s and s[key] != want:
                raise ValueError(f"official summary has {key}={s[key]!r}; only {want!r} is supported")
        if s.get("esm_dropout_prob", 0.0) != 0.0:
            raise ValueError("esm_dropout_prob != 0 is a training-time option and is not supported")
        kw = dict(
            name=str(s.get("name", "official")),
            hidden_size=int(s["hidden_size"]),
            num_heads=int(s["num_heads"]),
            depth=int(s["trunk_depth"]),
            atom_hidden_size=int(s["atom_hidden_size_enc"]),
            atom_num_heads=int(s["atom_num_heads"]),
            atom_encoder_depth=int(s["atom_encoder_depth"]),
            atom_decoder_depth=int(s["atom_decoder_depth"]),
        )
        # a key the summary lacks keeps the field's default
        kw.update({field: conv(s[key]) for key, (field, conv) in _OFFICIAL_OPTIONAL_KEYS.items() if key in s})
        kw.update(overrides)
        cfg = cls(**kw)
        checks = (
            ("head_dim", cfg.head_dim), ("atom_head_dim", cfg.atom_head_dim),
            ("trunk_swiglu_hidden", cfg.trunk_mlp_hidden), ("atom_swiglu_hidden", cfg.atom_mlp_hidden),
        )
        for key, got in checks:
            if key in s and int(s[key]) != got:
                raise ValueError(f"official summary {key}={s[key]} but the config derives {got}")
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"kind": "folding"}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FoldingConfig":
        return _from_dict(cls, d)


@dataclasses.dataclass(frozen=True, kw_only=True)
class PLDDTConfig:
    """Hyper-parameters of the pLDDT head (official ``ConfidenceModule``)."""

    name: str = "custom"
    hidden_size: int
    num_heads: int
    depth: int
    num_bins: int = PLDDT_NUM_BINS
    mlp_ratio: float = 4.0
    rope_base: float = 100.0
    rope_in_dim: int = 4
    dtype: Literal["float32", "bfloat16"] = "float32"

    def __post_init__(self):
        _check_choice("dtype", self.dtype, _DTYPES)
        if self.hidden_size % self.num_heads or self.head_dim % (2 * self.rope_in_dim):
            raise ValueError(f"head dim {self.hidden_size}/{self.num_heads} must be divisible by {2 * self.rope_in_dim}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def mlp_hidden(self) -> int:
        return swiglu_hidden(self.hidden_size, self.mlp_ratio)

    @classmethod
    def plddt_1_6B(cls, **overrides) -> "PLDDTConfig":
        kw = dict(name="plddt_1.6B", hidden_size=1536, num_heads=24, depth=4)
        kw.update(overrides)
        return cls(**kw)

    @classmethod
    def tiny(cls, **overrides) -> "PLDDTConfig":
        kw = dict(name="tiny", hidden_size=128, num_heads=4, depth=2)
        kw.update(overrides)
        return cls(**kw)

    @classmethod
    def from_official(cls, summary: dict[str, Any], **overrides) -> "PLDDTConfig":
        """Build from the ``summary`` dict of an official pLDDT json (``plddt_d64_h4.json``)."""
        kw = dict(
            name=str(summary.get("name", "official")),
            hidden_size=int(summary["hidden_size"]),
            num_heads=int(summary["num_heads"]),
            depth=int(summary["depth"]),
        )
        if "num_plddt_bins" in summary:
            kw["num_bins"] = int(summary["num_plddt_bins"])
        kw.update(overrides)
        cfg = cls(**kw)
        for key, got in (("head_dim", cfg.head_dim), ("swiglu_hidden", cfg.mlp_hidden)):
            if key in summary and int(summary[key]) != got:
                raise ValueError(f"official summary {key}={summary[key]} but the config derives {got}")
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"kind": "plddt"}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PLDDTConfig":
        return _from_dict(cls, d)


# official checkpoint names -> config constructors
OFFICIAL_SIZES = {
    "simplefold_100M": FoldingConfig.simplefold_100M,
    "simplefold_360M": FoldingConfig.simplefold_360M,
    "simplefold_700M": FoldingConfig.simplefold_700M,
    "simplefold_1.1B": FoldingConfig.simplefold_1_1B,
    "simplefold_1.6B": FoldingConfig.simplefold_1_6B,
    "simplefold_3B": FoldingConfig.simplefold_3B,
}
OFFICIAL_PLDDT_SIZES = {"plddt_1.6B": PLDDTConfig.plddt_1_6B}


def config_from_dict(d: dict[str, Any]) -> FoldingConfig | PLDDTConfig:
    """Inverse of ``to_dict`` for either config kind (dispatch on ``d["kind"]``)."""
    kind = d.get("kind")
    if kind == "folding":
        return FoldingConfig.from_dict(d)
    if kind == "plddt":
        return PLDDTConfig.from_dict(d)
    raise ValueError(f"config dict has unknown kind {kind!r}")

