"""AlphaFold-3-style confidence files of a predicted target: ``<target>_confidences.json`` and a ranking CSV.

AF3 writes one ``confidences.json`` per sample (per-atom pLDDT with the chain and residue of each
atom) and a ``ranking_scores.csv`` across samples; tools that read AF3 output (ChimeraX, PyMOL
plugins, pipelines) look for those keys. SimpleFold predicts no PAE or contact probabilities, so
only the pLDDT part is written. One file per target holds every sample::

    {
      "target": "gb1", "sequence": "MTYK...", "num_samples": 2,
      "token_chain_ids": ["A", ...],      # (L,) chain of each residue
      "token_res_ids": [1, 2, ...],       # (L,) residue number (as in the structure files)
      "atom_chain_ids": ["A", ...],       # (A,) chain of each heavy atom, official atom order
      "atom_res_ids": [1, 1, ...],        # (A,)
      "atom_names": ["N", "CA", ...],     # (A,)
      "ranking": [1, 0],                  # sample indices, best first
      "samples": [
        {"index": 0, "file": "gb1_sample_0.pdb", "rank": 2, "ranking_score": 71.3,
         "mean_plddt": 71.3,              # mean of the residue pLDDTs, 0-100
         "residue_plddts": [...],         # (L,) 0-100
         "atom_plddts": [...]},           # (A,) 0-100: its residue's value (as in the B-factor column)
        ...
      ]
    }

``<target>_ranking_scores.csv`` has the AF3 columns ``seed,sample,ranking_score`` plus ``rank`` and
``file``; the ranking score is the sample's mean pLDDT (the only confidence SimpleFold has).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

import numpy as np

#: Decimal places of the pLDDT values written (0-100 scale; the PDB B-factor column keeps 2).
PLDDT_DECIMALS = 2


def _rounded(values: np.ndarray) -> list[float]:
    return [round(float(v), PLDDT_DECIMALS) for v in np.asarray(values, np.float64)]


def confidences_document(result: Any, files: Sequence[str]) -> dict[str, Any]:
    """The ``<target>_confidences.json`` content of a :class:`~simplefold.predict.engine.FoldResult`.

    Args:
      result: a fold result whose samples all carry pLDDT (``Sample.plddt``, (L,) 0-100).
      files: the structure file name of each sample, in sample order.
    """
    first = result.samples[0].structure
    token_chains: list[str] = []
    token_res: list[int] = []
    atom_chains: list[str] = []
    atom_res: list[int] = []
    atom_names: list[str] = []
    for chain in first.chains:
        token_chains += [chain.chain_id] * len(chain.res_names)
        token_res += [int(r) for r in chain.res_ids]
        atom_chains += [chain.chain_id] * len(chain.atom_names)
        atom_res += [int(chain.res_ids[i]) for i in chain.atom_residue]
        atom_names += list(chain.atom_names)
    # residue index (over all chains) of every atom, to spread residue pLDDT over atoms
    offsets = np.cumsum([0] + [len(c.res_names) for c in first.chains])
    atom_token = np.concatenate([c.atom_residue + offsets[i] for i, c in enumerate(first.chains)])
    samples = []
    for s, name in zip(result.samples, files, strict=True):
        plddt = np.asarray(s.plddt, np.float64)
        if plddt.shape != (len(token_res),):
            raise ValueError(f"{result.name}: sample {s.index} has {plddt.shape[0]} pLDDT values for "
                             f"{len(token_res)} residues")
        mean = round(float(plddt.mean()), PLDDT_DECIMALS)
        samples.append({
            "index": s.index,
            "file": name,
            "rank": s.rank,
            "ranking_score": mean,  # the mean pLDDT: the only confidence SimpleFold has
            "mean_plddt": mean,
            "residue_plddts": _rounded(plddt),
            "atom_plddts": _rounded(plddt[atom_token]),
        })
    return {
        "target": result.name,
        "sequence": result.target.sequence,
        "num_samples": len(samples),
        "token_chain_ids": token_chains,
        "token_res_ids": token_res,
        "atom_chain_ids": atom_chains,
        "atom_res_ids": atom_res,
        "atom_names": atom_names,
        "ranking": [d["index"] for d in sorted(samples, key=lambda d: d["rank"])],
        "samples": samples,
    }


def ranking_csv(document: dict[str, Any], seed: int) -> str:
    """``<target>_ranking_scores.csv`` of a :func:`confidences_document`: best sample first."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["seed", "sample", "ranking_score", "rank", "file"])
    for d in sorted(document["samples"], key=lambda d: d["rank"]):
        w.writerow([seed, d["index"], f"{d['ranking_score']:.2f}", d["rank"], d["file"]])
    return buf.getvalue()
