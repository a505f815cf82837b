"""``simplefold predict``: fold every sequence of a FASTA file, a directory of FASTA files, or a bare sequence.

Examples::

    simplefold predict proteins.fasta -o out/ --model simplefold_100M --num-samples 5 --tau 0.01
    simplefold predict MKTAYIAKQRQISFVKSHFSRQ -o out/ --model demo --steps 100
    simplefold predict proteins.fasta -o out/ --dry-run              # estimates only, nothing loaded
    simplefold predict proteins.fasta -o out/ --shard 3/16           # one job of a SLURM array
    simplefold predict --merge-manifests out/                         # report the whole run

Every FASTA record is a target (unlike the official CLI, which folds one per file). Outputs
(see :mod:`simplefold.predict.outputs`): ``OUT/<target>/<target>_sample_<k>.<ext>``, an ``_ensemble``
multi-model file when --num-samples > 1, ``summary.json`` (written last; marks the target done),
``<target>_plddt.png``, and ``OUT/manifest.jsonl`` (``manifest.shard-I-of-N.jsonl`` per shard)
with one line per target: ok / skipped (already done) / failed + reason.

Rerunning the same command resumes: complete targets are skipped. A failing target is recorded
and the run goes on; the exit status is 1 if any target failed, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

HELP = "fold sequences (FASTA file, directory of FASTA files, or a sequence) into structures"

logger = logging.getLogger("simplefold.predict")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from simplefold.predict.loading import DEFAULT_MODEL
    from simplefold.predict.options import DEFAULT_NUM_SAMPLES, DEFAULT_SEED

    parser.add_argument("input", nargs="?", help="FASTA file, directory of FASTA files, or an amino-acid sequence")
    parser.add_argument("-o", "--output", type=Path, help="output directory")
    parser.add_argument(
        "--model", default=DEFAULT_MODEL,
        help=f"released name (simplefold_100M ... simplefold_3B), a directory of converted weights, or 'demo' "
        f"(default: {DEFAULT_MODEL})",
    )
    parser.add_argument("--num-samples", type=int, default=DEFAULT_NUM_SAMPLES, help="structures per target")
    parser.add_argument("--steps", type=int, default=None, help="sampler steps (default: 500)")
    parser.add_argument("--tau", type=float, default=None,
                        help="sampler noise scale (default: 0.1 as the official CLI; the paper folds with 0.01)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed (per target and sample)")
    parser.add_argument("--format", choices=("pdb", "cif"), default="pdb", help="structure file format")
    parser.add_argument("--plddt", action=argparse.BooleanOptionalAction, default=True,
                        help="compute pLDDT (B-factor column, summary.json, plot)")
    parser.add_argument("--batch-size", type=int, default=None, help="at most this many samples per network call")
    parser.add_argument("--max-memory-gb", type=float, default=None,
                        help="memory budget per device in GB (default: 85%% of accelerator memory / half the RAM)")
    parser.add_argument("--dry-run", action="store_true", help="print per-target memory and time estimates and exit")
    parser.add_argument("--shard", default=None, metavar="I/N",
                        help="fold only shard I of N (1-based; deterministic split for job arrays)")
    parser.add_argument("--merge-manifests", action="store_true",
                        help="merge the manifests of all shards in the output directory and report the run")
    parser.add_argument("--offline", action="store_true", help="never download weights")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--config", type=Path, default=None,
                        help="JSON file of option values (keys as the long options, e.g. "
                        "{\"num_samples\": 50, \"tau\": 0.6}); options given on the command line win")
    parser.set_defaults(_predict_defaults={a.dest: a.default for a in parser._actions})


def _apply_config(args: argparse.Namespace) -> None:
    """Fill options left at their defaults from the --config JSON file."""
    import json

    from simplefold.cli import CLIError

    try:
        data = json.loads(args.config.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CLIError(f"{args.config}: cannot read the JSON config ({exc})") from None
    if not isinstance(data, dict):
        raise CLIError(f"{args.config}: expected a JSON object of option values")
    defaults = args._predict_defaults
    for key, value in data.items():
        if key.startswith("_"):
            continue  # comments such as "_doc"
        dest = key.lstrip("-").replace("-", "_")
        if dest not in defaults or dest in ("config", "help"):
            raise CLIError(f"{args.config}: unknown option {key!r}")
        if getattr(args, dest) == defaults[dest]:
            setattr(args, dest, Path(value) if dest == "output" and value is not None else value)


def _read_targets(source: str):
    """Targets of INPUT (FASTA file, directory of FASTA files, or a bare sequence)."""
    from simplefold.cli import CLIError
    from simplefold.io import fasta
    from simplefold.predict.targets import read_targets

    try:
        targets = read_targets(source)
    except fasta.FastaError as exc:
        raise CLIError(str(exc)) from None
    except OSError as exc:
        raise CLIError(f"{source}: {exc.strerror or exc}") from None
    if not targets:
        raise CLIError(f"{source}: no sequences found")
    return targets


def _print_report(report, out: Path) -> None:
    ok, failed, missing = report.ok, report.failed, report.missing
    print(f"{out}: {len(ok)} ok, {len(failed)} failed, {len(missing)} not run")
    for name in failed:
        print(f"  FAILED {name}: {report.entries[name].get('reason', '')}")
    for name in missing:
        print(f"  MISSING {name}")


def run(args: argparse.Namespace) -> int:
    from simplefold.cli import CLIError
    from simplefold.predict import outputs, planning
    from simplefold.predict import run as predict_run
    from simplefold.predict.loading import ModelNotFoundError
    from simplefold.predict.options import FoldOptions

    if args.config is not None:
        _apply_config(args)
    # --merge-manifests OUT: the single positional is the output directory
    if args.merge_manifests:
        out = args.output or (Path(args.input) if args.input else None)
        if out is None:
            raise CLIError("--merge-manifests needs the output directory (simplefold predict --merge-manifests OUT)")
        if not out.is_dir():
            raise CLIError(f"{out}: no such output directory")
        targets = _read_targets(args.input) if args.input and args.output else None
        report = predict_run.merge_report(out, targets)
        _print_report(report, out)
        return 0 if report.success else 1

    if not args.input:
        raise CLIError("missing INPUT (a FASTA file, a directory of FASTA files, or a sequence)")
    if args.output is None and not args.dry_run:
        raise CLIError("missing -o/--output OUT")
    shard = None
    if args.shard:
        try:
            shard = outputs.parse_shard(args.shard)
        except ValueError as exc:
            raise CLIError(str(exc)) from None
    try:
        options = FoldOptions(
            num_samples=args.num_samples, seed=args.seed, num_steps=args.steps, tau=args.tau, plddt=args.plddt,
            batch_size=args.batch_size, max_memory_gb=args.max_memory_gb,
        )
    except ValueError as exc:
        raise CLIError(str(exc)) from None

    targets = _read_targets(args.input)
    if shard is not None:
        targets_here = [targets[i] for i in outputs.shard_indices([t.name for t in targets], shard)]
    else:
        targets_here = targets

    if args.dry_run:
        try:
            plans = planning.plan(targets_here, args.model, options)
        except ModelNotFoundError as exc:
            raise CLIError(str(exc)) from None
        print(planning.format_plan(plans))
        return 0

    try:
        report = predict_run.predict_to_directory(
            targets, args.output, args.model, options, fmt=args.format, shard=shard,
            progress=not (args.no_progress or args.quiet), offline=args.offline,
        )
    except ModelNotFoundError as exc:
        raise CLIError(str(exc)) from None
    except Exception as exc:
        from simplefold.weights.registry import WeightsError

        if isinstance(exc, WeightsError):
            raise CLIError(str(exc)) from None
        raise
    n_ok = sum(1 for s in report.status.values() if s in (outputs.STATUS_OK, outputs.STATUS_SKIPPED))
    n_skip = sum(1 for s in report.status.values() if s == outputs.STATUS_SKIPPED)
    logger.info("%d targets: %d ok (%d already done), %d failed; manifest %s",
                len(report.status), n_ok, n_skip, len(report.failed), report.manifest)
    for name in report.failed:
        logger.error("%s failed: %s", name, report.reasons.get(name, ""))
    return 1 if report.failed else 0


if __name__ == "__main__":  # pragma: no cover
    from simplefold.cli import main

    sys.exit(main(["predict", *sys.argv[1:]]))
