"""``simplefold weights``: list, download, import and verify released weights."""

from __future__ import annotations

import argparse
import pathlib
import sys

HELP = "manage released weights (list | download NAME | import PATH [--name NAME] | verify [NAME])"


SHA256_HELP = ("expected sha256 of the source file: refused if it differs, pinned if it matches (without it, "
               "the first download's sha256 is recorded and later ones must match)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    sub.add_parser("list", help="registry entries and what is installed")
    p = sub.add_parser("download", help="download and convert one entry")
    p.add_argument("name", help="registry name or alias (e.g. simplefold_100M, esm2_3B)")
    p.add_argument("--force", action="store_true", help="download and convert again")
    p.add_argument("--keep-source", action="store_true", help="keep the downloaded source file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--sha256", metavar="HEX", help=SHA256_HELP)
    p = sub.add_parser("import", help="install a file placed by hand (offline machines)")
    p.add_argument("path", type=pathlib.Path, help="the downloaded .ckpt / .pt file")
    p.add_argument("--name", help="registry name (default: the entry whose file name matches)")
    p.add_argument("--copy", action="store_true", help="also keep a copy of the file in the cache")
    p.add_argument("--sha256", metavar="HEX", help=SHA256_HELP)
    p = sub.add_parser("verify", help="re-hash installed weights against their records; say how each source is pinned")
    p.add_argument("name", nargs="?", help="only this entry")
    p = sub.add_parser("path", help="print the converted weights directory of an installed entry")
    p.add_argument("name", help="registry name or alias")


def _entry_for_file(path: pathlib.Path) -> str:
    from simplefold.weights.registry import registry

    matches = [e.name for e in registry().values() if e.filename == path.name]
    if len(matches) != 1:
        from simplefold.cli import CLIError

        raise CLIError(f"{path}: cannot tell which weights this is from its name; pass --name NAME")
    return matches[0]


def _human(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def run(args: argparse.Namespace) -> int:
    from simplefold.cli import CLIError
    from simplefold.utils.files import cache_dir
    from simplefold.weights import cache, registry

    try:
        if args.action == "list":
            inst = cache.installed()
            print(f"cache: {cache_dir()}")
            rows = [("name", "kind", "installed", "source size", "url")]
            for e in registry.registry().values():
                rec = inst.get(e.name)
                size = rec.get("source", {}).get("size") if rec else e.size
                rows.append((e.name, e.kind, "yes" if rec else "no", _human(size), e.effective_url))
            widths = [max(len(r[i]) for r in rows) for i in range(4)]
            for r in rows:  # columns as wide as their longest cell (names reach 37 characters)
                print(f"{r[0]:{widths[0]}}  {r[1]:{widths[1]}}  {r[2]:{widths[2]}}  {r[3]:>{widths[3]}}  {r[4]}")
            aliases = ", ".join(f"{a} -> {n}" for a, n in registry.ALIASES.items())
            print(f"aliases: {aliases}")
            return 0
        if args.action == "download":
            out = cache.download(args.name, force=args.force, keep_source=args.keep_source,
                                 progress=not args.no_progress, sha256=args.sha256)
            print(out)
            return 0
        if args.action == "import":
            name = args.name or _entry_for_file(args.path)
            print(cache.import_file(args.path, name, copy_source=args.copy, sha256=args.sha256))
            return 0
        if args.action == "verify":
            names = [args.name] if args.name else list(cache.installed())
            problems = cache.verify(args.name)
            for p in problems:
                print(f"PROBLEM {p}", file=sys.stdout)
            pins = cache.pin_status()
            unpinned = [n for n in names if pins.get(n) in (cache.PIN_FIRST_USE, "never")]
            for n in names:
                how = pins.get(n, "never")
                if how == cache.PIN_FIRST_USE:
                    print(f"{n}: sha256 recorded at first download, never pinned (pass --sha256 to pin)")
                elif how == "never":
                    print(f"{n}: never pinned (installed before pins were recorded; pass --sha256 to pin)")
                else:
                    print(f"{n}: source sha256 pinned by the {how}")
            if not problems:
                print(f"ok: {len(names)} installed entr{'y' if len(names) == 1 else 'ies'} verified"
                      + (f"; {len(unpinned)} never pinned" if unpinned else ""))
            return 1 if problems else 0
        if args.action == "path":
            print(cache.resolve(args.name, offline=True))
            return 0
    except registry.WeightsError as exc:
        raise CLIError(str(exc)) from exc
    except ValueError as exc:
        from simplefold.weights.esm import ESMWeightsError
        from simplefold.weights.torch_reader import CheckpointError

        if isinstance(exc, (CheckpointError, ESMWeightsError)):  # a bad file: its one-line reason names it
            raise CLIError(str(exc)) from None
        raise
    raise CLIError(f"unknown action {args.action!r}")
