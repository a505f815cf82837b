"""``simplefold export``: turn a training run's checkpoint into a converted model directory."""

from __future__ import annotations

import argparse

HELP = "export a training run's checkpoint (EMA weights by default) as a model directory for predict"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="output directory of `simplefold train`")
    p.add_argument("-o", "--output", required=True, help="new model directory (refused if it exists)")
    p.add_argument("--step", default="latest", help="checkpoint step: latest (default), best, or a number")
    p.add_argument("--raw-weights", action="store_true", help="export the raw weights instead of the EMA")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output directory")


def run(args: argparse.Namespace) -> int:
    from simplefold.cli import CLIError
    from simplefold.training.export import ExportError, export_run

    step = int(args.step) if str(args.step).isdigit() else args.step
    try:
        out = export_run(args.run_dir, args.output, step=step, use_ema=not args.raw_weights, overwrite=args.overwrite)
    except ExportError as exc:
        raise CLIError(str(exc)) from None
    print(out)
    return 0
