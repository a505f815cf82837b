"""Peak memory of converting an ESM2 checkpoint to simplefold's Orbax layout.

Writes a synthetic ESM2-like checkpoint (random float16 weights, the released fair-esm layout,
default ~400 MB) with the torch-free writer (``simplefold.devtools.torch_writer``), converts it with
``simplefold.weights.esm.convert_official_esm2`` in a fresh subprocess, and reports that subprocess's
peak RSS (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) against the file size. A second
subprocess that only imports the same modules gives the baseline (jax, orbax, ...).

Run from the repository root::

    .venv/bin/python -m benchmarks.convert_memory [--layers 10] [--dim 1280] [--keep DIR]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import pathlib
import subprocess
import sys
import tempfile

import numpy as np

from simplefold.devtools.torch_writer import LazyArray, save_torch_zip

_MEASURE = r"""
import json, resource, sys
import jax, orbax.checkpoint, flax.nnx  # noqa: F401  (the same imports as the conversion)
from simplefold.weights import esm, torch_reader
from simplefold.model import esm2  # noqa: F401
if sys.argv[1] == "convert":
    esm.convert_official_esm2(sys.argv[2], sys.argv[3], source_sha256="0" * 64)
print(json.dumps({"maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def write_synthetic_esm2(path: pathlib.Path, layers: int, dim: int, heads: int, seed: int = 0) -> None:
    """A random float16 ESM2 checkpoint in the released layout, generated one tensor at a time."""
    vocab, ffn, head_dim = 33, 4 * dim, dim // heads

    def rand(*shape):
        # each tensor gets its own generator so data is produced only when written
        key = hash((seed, shape, len(sd)))
        return LazyArray(shape, np.dtype(np.float16),
                         lambda: np.random.default_rng(abs(key)).standard_normal(shape, dtype=np.float32)
                         .astype(np.float16))

    sd: collections.OrderedDict = collections.OrderedDict()
    p = "encoder.sentence_encoder."
    sd[p + "embed_tokens.weight"] = rand(vocab, dim)
    inv_freq = (1.0 / 10000 ** (np.arange(0, head_dim, 2, dtype=np.float32) / head_dim)).astype(np.float32)
    for i in range(layers):
        q = f"{p}layers.{i}."
        for proj in ("k_proj", "v_proj", "q_proj", "out_proj"):
            sd[f"{q}self_attn.{proj}.weight"] = rand(dim, dim)
            sd[f"{q}self_attn.{proj}.bias"] = rand(dim)
        sd[f"{q}self_attn.rot_emb.inv_freq"] = inv_freq
        sd[f"{q}self_attn_layer_norm.weight"] = rand(dim)
        sd[f"{q}self_attn_layer_norm.bias"] = rand(dim)
        sd[f"{q}fc1.weight"] = rand(ffn, dim)
        sd[f"{q}fc1.bias"] = rand(ffn)
        sd[f"{q}fc2.weight"] = rand(dim, ffn)
        sd[f"{q}fc2.bias"] = rand(dim)
        sd[f"{q}final_layer_norm.weight"] = rand(dim)
        sd[f"{q}final_layer_norm.bias"] = rand(dim)
    sd[p + "emb_layer_norm_after.weight"] = rand(dim)
    sd[p + "emb_layer_norm_after.bias"] = rand(dim)
    sd["encoder.lm_head.weight"] = sd[p + "embed_tokens.weight"]  # tied, as released
    sd["encoder.lm_head.bias"] = rand(vocab)
    sd["encoder.lm_head.dense.weight"] = rand(dim, dim)
    sd["encoder.lm_head.dense.bias"] = rand(dim)
    sd["encoder.lm_head.layer_norm.weight"] = rand(dim)
    sd["encoder.lm_head.layer_norm.bias"] = rand(dim)
    cfg = argparse.Namespace(
        arch="synthetic", encoder_layers=layers, encoder_embed_dim=dim, encoder_ffn_embed_dim=ffn,
        encoder_attention_heads=heads, token_dropout=True,
    )
    save_torch_zip(path, {"model": sd, "cfg": {"model": cfg}})


def _peak_kib(*args: str) -> int:
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", _MEASURE, *args], check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])["maxrss_kib"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=10)
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--heads", type=int, default=20)
    parser.add_argument("--keep", type=pathlib.Path, help="work in this directory and keep the files")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="sf-convert-mem-") as tmp:
        work = args.keep or pathlib.Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        ckpt = work / "esm2_synthetic.pt"
        write_synthetic_esm2(ckpt, args.layers, args.dim, args.heads)
        size = ckpt.stat().st_size
        baseline = _peak_kib("baseline") * 1024
        peak = _peak_kib("convert", str(ckpt), str((work / "converted").absolute())) * 1024
        mib = 1 << 20
        print(f"checkpoint        {size / mib:9.1f} MiB  ({args.layers} layers x {args.dim}, float16)")
        print(f"baseline RSS      {baseline / mib:9.1f} MiB  (imports only)")
        print(f"conversion RSS    {peak / mib:9.1f} MiB  (peak)")
        print(f"peak / file size  {peak / size:9.2f}")
        print(f"(peak - baseline) / file size  {(peak - baseline) / size:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
