"""``simplefold analyze ENSEMBLE... [--ref REF ...] [-o OUTDIR] [--json]``: structural-ensemble statistics.

ENSEMBLE is one or more structure files (every model of a multi-model file is a member: an NMR entry
or the ``<target>_ensemble.pdb`` of ``simplefold predict``) and/or directories (their
``<target>_sample_<k>`` files, else every structure file in them). Computed on CA atoms of the
residues common to all members (:mod:`simplefold.evaluation.analysis`):

* per-residue RMSF after iterative superposition onto the mean structure;
* the pairwise RMSD matrix after optimal superposition, and average-linkage clusters cut at
  ``--cluster-rmsd`` Å with each cluster's medoid as representative;
* with ``--ref``, the best TM-score of any member to each reference, and which member.

Writes into OUTDIR: ``analysis.json``, ``rmsf.png``, ``rmsf.csv``, ``rmsd_heatmap.png``,
``rmsd_matrix.npy``, ``rmsd_matrix.csv`` and ``representatives.pdb`` (model i = representative of
cluster i, largest first). Put ``--ref`` after the ENSEMBLE paths (it takes every path that follows). Prints a summary
table, or with ``--json`` the analysis JSON, on stdout.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys

from simplefold.cli import CLIError

HELP = "ensemble statistics: CA RMSF, pairwise RMSD heat-map, clusters, best TM-score to references"

_MAX_CLUSTER_ROWS = 10


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from simplefold.evaluation.analysis import AnalysisConfig

    parser.add_argument(
        "ensemble", nargs="+", type=pathlib.Path, metavar="ENSEMBLE",
        help="multi-model structure file(s), single-model files, or directories of *_sample_<k> files",
    )
    parser.add_argument(
        "--ref", nargs="+", action="extend", type=pathlib.Path, default=[], metavar="REF",
        help="reference structure(s); reports the best TM-score of any member to each",
    )
    parser.add_argument("-o", "--outdir", type=pathlib.Path, default=pathlib.Path("analysis"),
                        help="output directory (default: ./analysis)")
    parser.add_argument("--cluster-rmsd", type=float, default=AnalysisConfig.cluster_rmsd, metavar="ANGSTROM",
                        help="average-linkage cut for clustering, Å (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print the analysis JSON on stdout instead of the table")


def _fmt(v: float | None, spec: str = ".2f") -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def _print_summary(summary: dict, outdir: pathlib.Path, out) -> None:
    rmsf, pair, clus = summary["rmsf"], summary["pairwise_rmsd"], summary["clustering"]
    print(f"members            {summary['n_members']}", file=out)
    print(f"residues (CA)      {summary['n_residues']}", file=out)
    print(f"RMSF (Å)           mean {_fmt(rmsf['mean'])}  min {_fmt(rmsf['min'])}  "
          f"max {_fmt(rmsf['max'])} (residue {rmsf['max_residue']})", file=out)
    print(f"pairwise RMSD (Å)  mean {_fmt(pair['mean'])}  median {_fmt(pair['median'])}  "
          f"min {_fmt(pair['min'])}  max {_fmt(pair['max'])}", file=out)
    print(f"clusters at {clus['threshold_rmsd']:g} Å  {clus['n_clusters']}", file=out)
    print(f"  {'#':>3} {'size':>5} {'representative':<30} {'mean RMSD to rep.':>18}", file=out)
    for i, c in enumerate(clus["clusters"][:_MAX_CLUSTER_ROWS], start=1):
        print(f"  {i:>3} {c['size']:>5} {c['representative_label']:<30} {_fmt(c['mean_rmsd_to_representative']):>18}",
              file=out)
    if len(clus["clusters"]) > _MAX_CLUSTER_ROWS:
        rest = clus["clusters"][_MAX_CLUSTER_ROWS:]
        print(f"  ... {len(rest)} more cluster(s) with {sum(c['size'] for c in rest)} member(s)", file=out)
    if summary["references"]:
        print(f"  {'reference':<24} {'best TM':>8}  best member", file=out)
        for r in summary["references"]:
            print(f"  {r['name']:<24} {_fmt(r['best_tm_score'], '.4f'):>8}  {r['best_label'] or '-'}", file=out)
    print(f"output             {outdir}", file=out)


def run(args: argparse.Namespace) -> int:
    from simplefold.evaluation import analysis
    from simplefold.io.structure import StructureError

    if not args.cluster_rmsd >= 0:
        raise CLIError(f"--cluster-rmsd must be >= 0 Å, got {args.cluster_rmsd}")
    config = analysis.AnalysisConfig(cluster_rmsd=args.cluster_rmsd)
    try:
        ensemble = analysis.load_ensemble(args.ensemble)
        references = analysis.load_references(args.ref)
    except (analysis.EnsembleError, StructureError) as exc:
        raise CLIError(str(exc)) from exc
    if ensemble.num_members < 2:
        raise CLIError(f"{', '.join(map(str, args.ensemble))}: the ensemble has only one member; "
                       "give a multi-model file or several structures")
    result = analysis.analyze(ensemble, references, config)
    files = analysis.write_analysis(result, args.outdir)
    if args.json:
        sys.stdout.write(json.dumps(json.loads(files["json"].read_text()), indent=2) + "\n")
    else:
        _print_summary(json.loads(files["json"].read_text()), args.outdir, sys.stdout)
    return 0
