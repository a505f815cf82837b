"""``simplefold eval-set``: a benchmark set (targets FASTA + one reference per chain) from prepared data."""

from __future__ import annotations

import argparse

HELP = "write targets.fasta and single-chain references for one split of a prepared dataset"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("prepared", help="output directory of `simplefold prepare-data`")
    p.add_argument("--split", default="dev", help="split to export, or 'all' (default: %(default)s)")
    p.add_argument("-o", "--output", required=True, help="directory for targets.fasta and references/")
    # limits left unset keep export_eval_set's defaults
    p.add_argument("--max-targets", type=int, help="export at most this many chains, in record order (default: all)")
    p.add_argument("--min-length", type=int, help="shortest chain exported, residues (default: no limit)")
    p.add_argument("--max-length", type=int, help="longest chain exported, residues (default: no limit)")


def run(args: argparse.Namespace) -> int:
    from simplefold.cli import CLIError
    from simplefold.evaluation.evalsets import export_eval_set

    limits = {k: getattr(args, k) for k in ("max_targets", "min_length", "max_length") if getattr(args, k) is not None}
    try:
        n, problems = export_eval_set(args.prepared, None if args.split == "all" else args.split, args.output, **limits)
    except (OSError, ValueError) as exc:
        raise CLIError(f"{args.prepared}: {exc}") from None
    for p in problems:
        print(f"skipped {p}")
    print(f"{n} targets -> {args.output}/targets.fasta, references in {args.output}/references/")
    return 1 if problems else 0
