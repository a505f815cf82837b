"""``simplefold evaluate PRED REF``: score predicted structures against references.

A thin wrapper of :func:`simplefold.evaluation.evaluate.evaluate` (matching rules and the JSON
layout are described there): prints the table on stdout, writes ``--json`` and ``--plots``; the
exit status is 1 when a file was unmatched or unreadable (the others are still scored).
"""

from __future__ import annotations

import argparse
import logging
import pathlib

HELP = "score predicted structures against references (TM-score, GDT, lDDT, RMSD)"

logger = logging.getLogger("simplefold.evaluate")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pred", type=pathlib.Path, help="predicted structure file or directory")
    parser.add_argument("ref", type=pathlib.Path, help="reference structure file or directory")
    parser.add_argument("--json", type=pathlib.Path, metavar="OUT", help="also write the results as JSON")
    parser.add_argument(
        "--plots",
        type=pathlib.Path,
        metavar="DIR",
        help="also write per-target lDDT-per-residue plots (best-lDDT sample) and TM-score / lDDT histograms",
    )
    parser.add_argument(
        "--by-residue-number",
        action="store_true",
        help="pair residues by author number + insertion code instead of by sequence alignment",
    )


def run(args: argparse.Namespace) -> int:
    from simplefold.cli import CLIError
    from simplefold.evaluation.evaluate import EvaluationError, evaluate, format_table, write_plots
    from simplefold.utils.files import write_json

    try:
        report = evaluate(args.pred, args.ref, by_residue_number=args.by_residue_number, progress=True)
    except EvaluationError as exc:
        raise CLIError(str(exc)) from None
    if report.targets:
        print(format_table(report))
    for p in report.problems:
        logger.error("%s (%s): %s", p.name, p.file, p.error)
    if args.plots is not None and report.targets:
        write_plots(report, args.plots)
    if args.json is not None:
        write_json(args.json, report.to_dict())
        logger.info("wrote %s", args.json)
    if not report.ok:
        logger.error("%d problem(s); %d target(s) scored", len(report.problems), len(report.targets))
        return 1
    return 0
