"""Every ``simplefold`` subcommand's --help: each option has a help text, and each option with a
default value says it (the parser's own default, or the one resolved later for predict)."""

from __future__ import annotations

import argparse

import pytest

from simplefold.cli import SUBCOMMANDS, build_parser


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    out = {}
    parser = build_parser()

    def walk(p, prefix):
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                for name, sp in a.choices.items():
                    out[" ".join(prefix + [name])] = sp
                    walk(sp, prefix + [name])

    walk(parser, [])
    return out


PARSERS = _subparsers()


def test_every_subcommand_is_reachable():
    assert set(SUBCOMMANDS) <= set(PARSERS)


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_options_have_help_and_state_their_defaults(name):
    for a in PARSERS[name]._actions:
        if isinstance(a, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
            continue
        label = "/".join(a.option_strings) or a.dest
        assert a.help and a.help != argparse.SUPPRESS, f"{name} {label}: no help text"
        d = a.default
        if a.option_strings and d not in (None, False, [], argparse.SUPPRESS):
            assert "default" in a.help, f"{name} {label}: default {d!r} not shown in its help"


def test_predict_help_shows_the_resolved_defaults():
    text = PARSERS["predict"].format_help()
    for needle in ("structures per target (default: 1)", "(default: 500)", "default: 42", "(default: pdb)",
                   "required, except with --dry-run"):
        assert needle in " ".join(text.split()), needle


def test_eval_set_limits_have_help_with_defaults():
    text = " ".join(PARSERS["eval-set"].format_help().split())
    assert "shortest chain exported, residues (default: no limit)" in text
    assert "longest chain exported, residues (default: no limit)" in text
