"""Local chemistry and size of predicted structures against their references (the demo table).

Usage::

    python benchmarks/geometry.py PRED_DIR REF_DIR [--json OUT]

PRED_DIR is a ``simplefold predict`` output (``<target>/<target>_sample_<k>.pdb``), REF_DIR holds
``<target>.pdb`` (``simplefold eval-set``). For every sample: median N–CA, CA–C, peptide C–N and
consecutive CA–CA distances (Å), radius of gyration relative to the reference, heavy-atom clashes
(< 2.2 Å, see ``simplefold.evaluation.geometry``) per atom. Prints the median (and mean) over samples of each.
TM-score / lDDT come from ``simplefold evaluate``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import sys

import numpy as np

from simplefold.evaluation import geometry
from simplefold.io.structure import read_structure

_SAMPLE = re.compile(r"^(?P<target>.+)_sample_(?P<k>\d+)\.(pdb|cif)$")
KEYS = ("n_ca", "ca_c", "c_n", "ca_ca", "rg_ratio", "clashes_per_atom")


def rows(pred_dir: pathlib.Path, ref_dir: pathlib.Path) -> list[dict]:
    out = []
    refs: dict[str, dict] = {}
    for path in sorted(pred_dir.rglob("*_sample_*")):
        m = _SAMPLE.match(path.name)
        if not m:
            continue
        name = m["target"]
        if name not in refs:
            ref_path = next(iter(sorted(ref_dir.glob(f"{name}.*"))), None)
            if ref_path is None:
                print(f"no reference for {name}", file=sys.stderr)
                continue
            refs[name] = geometry.structure_geometry(read_structure(ref_path), clashes=False)
        g = geometry.structure_geometry(read_structure(path))
        g["rg_ratio"] = g["rg"] / refs[name]["rg"]
        out.append({"target": name, "sample": int(m["k"]), **{k: g[k] for k in KEYS}})
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("pred", type=pathlib.Path)
    p.add_argument("ref", type=pathlib.Path)
    p.add_argument("--json", type=pathlib.Path)
    args = p.parse_args(argv)
    data = rows(args.pred, args.ref)
    if not data:
        print("no samples found", file=sys.stderr)
        return 1
    print(f"{len(data)} samples")
    print("metric | median | mean")
    summary = {}
    for k in KEYS:
        v = np.array([r[k] for r in data], float)
        v = v[np.isfinite(v)]
        summary[k] = {"median": float(np.median(v)), "mean": float(np.mean(v))}
        print(f"{k} | {summary[k]['median']:.3f} | {summary[k]['mean']:.3f}")
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "samples": data}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
