"""The ``simplefold`` console script.

Each subcommand lives in its own module ``simplefold.cli.<name>`` that defines

* ``HELP``: one line shown by ``simplefold --help``;
* ``add_arguments(parser)``: its options;
* ``run(args) -> int``: the exit status.

Modules import heavy dependencies (jax, flax) inside ``run`` so that ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# Order shown in --help.
SUBCOMMANDS = (
    "predict", "evaluate", "analyze", "weights", "prepare-data", "eval-set", "train", "train-plddt", "export",
)


def _module_name(command: str) -> str:
    return "simplefold.cli." + command.replace("-", "_")


class CLIError(Exception):
    """An error with a message meant for the user (printed without a traceback)."""


def build_parser() -> argparse.ArgumentParser:
    from simplefold import __version__

    parser = argparse.ArgumentParser(
        prog="simplefold",
        description="SimpleFold-style protein structure prediction in JAX.",
    )
    parser.add_argument("--version", action="version", version=f"simplefold {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in SUBCOMMANDS:
        try:
            module = importlib.import_module(_module_name(command))
        except ModuleNotFoundError as exc:  # a subcommand not built yet
            if exc.name != _module_name(command):
                raise
            continue
        p = sub.add_parser(command, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    # Third-party chatter stays at WARNING unless -vv.
    for noisy in ("absl", "jax", "orbax", "etils", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose > 1 else logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    setup_logging(args.verbose, args.quiet)
    try:
        return int(args._module.run(args) or 0)
    except CLIError as exc:
        logging.getLogger("simplefold").error("%s", exc)
        return 2
    except KeyboardInterrupt:
        logging.getLogger("simplefold").error("interrupted")
        return 130
    except BrokenPipeError:  # e.g. `simplefold weights list | head`
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
