"""``simplefold train``: train or fine-tune a folding model from a JSON config (resumes automatically)."""

from __future__ import annotations

import argparse
import json
import sys

HELP = "train or fine-tune a model (config in train/*.json, overrides key=value; resumes from checkpoints)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="JSON run config (see train/README.md)")
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE",
        help="dotted overrides, e.g. loop.max_steps=100 optim.lr=3e-4 data.data_dir=data/prepared",
    )
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")


def resolve_config(load, args: argparse.Namespace):
    """``load(args.config, args.overrides)`` with config errors as CLI errors; None after
    ``--print-config`` has printed the resolved config (the command then exits 0)."""
    from simplefold.cli import CLIError
    from simplefold.training.config import ConfigError

    try:
        config = load(args.config, args.overrides)
    except ConfigError as exc:
        raise CLIError(str(exc)) from exc
    if args.print_config:
        sys.stdout.write(config.to_json() + "\n")
        return None
    return config


def run(args: argparse.Namespace) -> int:
    from simplefold.cli import CLIError
    from simplefold.training.config import load_config

    config = resolve_config(load_config, args)
    if config is None:
        return 0
    from simplefold.training.loop import train

    try:
        result = train(config)
    except (FileNotFoundError, ValueError) as exc:
        raise CLIError(str(exc)) from exc
    summary = {
        "output_dir": str(result.output_dir),
        "start_step": result.start_step,
        "final_step": result.final_step,
        "stopped_early": result.stopped_early,
        "last": {k: round(v, 5) for k, v in result.last_metrics.items() if isinstance(v, float)},
        "validation": {k: round(v, 4) for k, v in result.last_validation.items()},
    }
    sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    return 0
