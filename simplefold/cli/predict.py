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
import dataclasses
import logging
import sys
from pathlib import Path

HELP = "fold sequences (FASTA file, directory of FASTA files, or a sequence) into structures"

logger = logging.getLogger("simplefold.predict")


def option_defaults() -> dict[str, object]:
    """Each option's value when neither the command line nor ``--config`` sets it (None: decided
    later, e.g. the sampler's own default steps and τ)."""
    from simplefold.predict.loading import DEFAULT_MODEL
    from simplefold.predict.options import FoldOptions
    from simplefold.predict.outputs import DEFAULT_FORMAT

    # the field defaults, read without building a FoldOptions (whose check imports the sampler and jax)
    options = {f.name: f.default for f in dataclasses.fields(FoldOptions)}
    return {
        "input": None, "output": None, "model": DEFAULT_MODEL, "num_samples": options["num_samples"],
        "steps": options["num_steps"], "tau": options["tau"], "seed": options["seed"], "format": DEFAULT_FORMAT,
        "plddt": options["plddt"], "batch_size": options["batch_size"], "max_memory_gb": options["max_memory_gb"],
        "precision": options["precision"],
        "dry_run": False, "shard": None, "merge_manifests": False, "offline": False, "no_progress": False,
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # Every option defaults to None here, so that after parsing an option that is not None was
    # given on the command line; resolve_options then fills the others from --config, then from
    # option_defaults(): the command line wins over the file, the file over the defaults.
    from simplefold.constants import NUM_STEPS, TAU
    from simplefold.model.precision import PRECISIONS
    from simplefold.predict.outputs import FORMATS
    from simplefold.predict.planning import DEVICE_MEMORY_FRACTION, HOST_MEMORY_HEADROOM

    d = option_defaults()
    parser.add_argument("input", nargs="?", help="FASTA file, directory of FASTA files, or an amino-acid sequence")
    parser.add_argument("-o", "--output", type=Path, help="output directory (required, except with --dry-run or --merge-manifests)")
    parser.add_argument(
        "--model",
        help=f"released name (simplefold_100M ... simplefold_3B), a directory of converted weights, or 'demo' "
        f"(default: {d['model']})",
    )
    parser.add_argument("--num-samples", type=int, help=f"structures per target (default: {d['num_samples']})")
    parser.add_argument("--steps", type=int, help=f"sampler steps (default: {NUM_STEPS})")
    parser.add_argument("--tau", type=float,
                        help=f"sampler noise scale (default: {TAU} as the official CLI; the paper folds with 0.01)")
    parser.add_argument("--seed", type=int, help=f"random seed (per target and sample; default: {d['seed']})")
    parser.add_argument("--format", choices=FORMATS, help=f"structure file format (default: {d['format']})")
    plddt = "on" if d["plddt"] else "off"
    parser.add_argument("--plddt", action=argparse.BooleanOptionalAction,
                        help=f"compute pLDDT (B-factor column, summary.json, plot; default: {plddt})")
    parser.add_argument("--batch-size", type=int, help="at most this many samples per network call")
    parser.add_argument("--precision", choices=PRECISIONS,
                        help=f"float32 = the official numerics; bfloat16 = mixed precision, faster on CPUs and GPUs "
                             f"with bf16 units (default: {d['precision']})")
    budget = (f"{DEVICE_MEMORY_FRACTION:.0%} of accelerator memory; on CPU the available RAM minus "
              f"{HOST_MEMORY_HEADROOM / 1e9:.1f} GB")
    parser.add_argument("--max-memory-gb", type=float,
                        help=f"memory budget per device in GB (default: {budget})".replace("%", "%%"))
    parser.add_argument("--dry-run", action="store_true", default=None,
                        help="print per-target memory and time estimates and exit (status 1 if any target would fail)")
    parser.add_argument("--shard", metavar="I/N",
                        help="fold only shard I of N (1-based; deterministic split for job arrays)")
    parser.add_argument("--merge-manifests", action="store_true", default=None,
                        help="merge the manifests of all shards in the output directory and report the run")
    parser.add_argument("--offline", action="store_true", default=None, help="never download weights")
    parser.add_argument("--no-progress", action="store_true", default=None, help="no progress bars")
    parser.add_argument("--config", type=Path, default=None,
                        help="JSON file of option values (keys as the long options, e.g. "
                        "{\"num_samples\": 50, \"tau\": 0.6}); options given on the command line win")


def resolve_options(args: argparse.Namespace) -> None:
    """Fill every option the command line left unset from the ``--config`` file, else from its default."""
    from simplefold.cli import CLIError

    defaults = option_defaults()
    given: dict[str, object] = {}
    if args.config is not None:
        import json

        try:
            data = json.loads(args.config.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CLIError(f"{args.config}: cannot read the JSON config ({exc})") from None
        if not isinstance(data, dict):
            raise CLIError(f"{args.config}: expected a JSON object of option values")
        for key, value in data.items():
            if key.startswith("_"):
                continue  # comments such as "_doc"
            dest = key.lstrip("-").replace("-", "_")
            if dest not in defaults:
                raise CLIError(f"{args.config}: unknown option {key!r}")
            given[dest] = Path(value) if dest == "output" and value is not None else value
    for dest, default in defaults.items():
        if getattr(args, dest) is None:
            setattr(args, dest, given.get(dest, default))


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
    from simplefold.predict.targets import OutputSpaceError

    resolve_options(args)
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
            batch_size=args.batch_size, max_memory_gb=args.max_memory_gb, precision=args.precision,
        )
    except ValueError as exc:
        raise CLIError(str(exc)) from None

    targets = _read_targets(args.input)
    if not args.dry_run:  # before any work: a run that cannot write its results must not fold first
        from simplefold.utils.files import check_writable_dir

        try:
            check_writable_dir(args.output)
        except OSError as exc:
            raise CLIError(str(exc.strerror or exc)) from None
    if shard is not None:
        targets_here = [targets[i] for i in outputs.shard_indices([t.name for t in targets], shard)]
    else:
        targets_here = targets

    if args.dry_run:
        try:
            plans = planning.plan(targets_here, args.model, options)
        except ModelNotFoundError as exc:
            raise CLIError(str(exc)) from None
        print(planning.format_plan(plans, planning.memory_budget(options)))
        # like the real run: a target that would fail makes the exit status 1
        return 1 if any(p.error for p in plans) else 0

    try:
        report = predict_run.predict_to_directory(
            targets, args.output, args.model, options, fmt=args.format, shard=shard,
            progress=not (args.no_progress or args.quiet), offline=args.offline,
        )
    except ModelNotFoundError as exc:
        raise CLIError(str(exc)) from None
    except OutputSpaceError as exc:  # one line, no traceback; the run resumes after space is freed
        raise CLIError(exc.strerror) from None
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
