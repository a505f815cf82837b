"""``simplefold train-plddt``: train a pLDDT head on a folding model's own samples (official recipe, scaled down)."""

from __future__ import annotations

import argparse
import json
import sys

HELP = "train a pLDDT head on a model's own samples of prepared chains (place the output at MODEL/plddt/)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="folding model: converted directory, 'demo' or a released name")
    parser.add_argument("--data", required=True, help="prepared dataset (simplefold prepare-data) with train/dev splits")
    parser.add_argument("-o", "--output", required=True, help="directory to create for the head (+ metrics.json)")
    parser.add_argument("--config", default=None, help="JSON config (e.g. train/demo_plddt.json); default: built-in")
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE",
        help="dotted overrides, e.g. chains.max_train_chains=50 samples.num_steps=20 fit.epochs=10",
    )
    parser.add_argument("--cache-dir", default=None,
                        help="keep the sampled sets here and reuse them when model, data and sampling are unchanged")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from simplefold.cli import CLIError
    from simplefold.cli.train import resolve_config
    from simplefold.training.plddt import load_plddt_config

    config = resolve_config(load_plddt_config, args)
    if config is None:
        return 0

    from simplefold.predict.loading import ModelNotFoundError
    from simplefold.training.plddt import train_plddt
    from simplefold.utils.files import json_safe

    try:
        metrics = train_plddt(
            args.model, args.data, args.output, config,
            cache_dir=args.cache_dir, overwrite=args.overwrite, progress=not args.no_progress,
        )
    except (ModelNotFoundError, FileNotFoundError, ValueError) as exc:
        raise CLIError(str(exc)) from exc
    dev = metrics["dev"]
    keys = ("loss", "loss_marginal_baseline", "token_pearson", "chain_pearson", "chain_pearson_allatom",
            "token_pearson_from_noise", "chain_pearson_from_noise", "token_mae", "samples")
    summary = {"output": args.output, "dev": {k: dev[k] for k in keys}, "dev_targets": dev["targets"],
               "seconds": metrics["seconds"]}
    sys.stdout.write(json.dumps(json_safe(summary), indent=2) + "\n")
    return 0
