"""``simplefold prepare-data``: structure files -> a prepared training dataset."""

from __future__ import annotations

import argparse
import json
import sys

HELP = "parse PDB/mmCIF files into a training dataset (one .npz per chain + manifest)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from simplefold.io.dataset import PrepareOptions

    d = PrepareOptions()
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="structure files or directories (recursive)")
    parser.add_argument("-o", "--out", required=True, help="output directory (re-running resumes)")
    parser.add_argument("--split", metavar="CSV", help="split table (file,chain,...,split); other chains are skipped")
    parser.add_argument("--min-length", type=int, default=d.min_length, help="minimum residues (default: %(default)s)")
    parser.add_argument("--max-length", type=int, default=d.max_length, help="maximum residues (default: none)")
    parser.add_argument(
        "--min-resolved", type=float, default=d.min_resolved_fraction,
        help="minimum fraction of residues with a CA (default: %(default)s)",
    )
    parser.add_argument("--model", type=int, default=d.model,
                        help="model number of multi-model files (default: %(default)s)")
    parser.add_argument("-j", "--workers", type=int, default=None, help="worker processes (default: CPU count)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from simplefold.cli import CLIError
    from simplefold.io.dataset import PrepareOptions, prepare_dataset

    options = PrepareOptions(
        min_length=args.min_length,
        max_length=args.max_length,
        min_resolved_fraction=args.min_resolved,
        model=args.model,
    )
    try:
        summary = prepare_dataset(
            args.inputs, args.out, split_csv=args.split, options=options, workers=args.workers,
            progress=not args.no_progress,
        )
    except (FileNotFoundError, ValueError) as exc:
        raise CLIError(str(exc)) from exc
    d = summary.to_dict()
    errors = d.pop("errors")
    sys.stdout.write(json.dumps(d, indent=2) + "\n")
    if errors:
        sys.stdout.write(f"{len(errors)} file(s) could not be read (reasons in {args.out}/manifest.jsonl), e.g.:\n")
        for e in errors[:5]:
            sys.stdout.write(f"  {e}\n")
    return 0
