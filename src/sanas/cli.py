"""The ``sanas`` command line. Every command calls the Python API; none re-implements it."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console

from sanas.network import GENOTYPES
from sanas.spaces import SearchSpace, get_space

__all__ = ["main", "parse_tokens"]


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


def parse_tokens(values: Sequence[str]) -> list[int]:
    """Parse ``["5", "5", "0"]`` or ``["5,5,0"]`` (or ``"[5, 5, 0]"``) into integers.

    >>> parse_tokens(["5,5", "0"])
    [5, 5, 0]
    """
    parts = [p for v in values for p in v.replace("[", " ").replace("]", " ").replace(",", " ").split()]
    tokens = []
    for i, part in enumerate(parts):
        try:
            tokens.append(int(part))
        except ValueError:
            raise CLIError(f"token {i} is {part!r}, expected an integer") from None
    if not tokens:
        raise CLIError("no tokens given; expected integers like --token 5 5 0 5")
    return tokens


def add_space_arguments(parser: argparse.ArgumentParser) -> None:
    """The search-space options shared by every command that builds a space."""
    group = parser.add_argument_group("search space")
    group.add_argument("--space", default="DartsSpace", help="registered space name (default: DartsSpace)")
    group.add_argument("--layers", type=int, help="number of cells (DartsSpace default: 20)")
    group.add_argument("--filter-num", type=lambda s: [int(x) for x in s.replace(",", " ").split()],
                       help='width choices, e.g. "4,8,12,16,24,32,48,64"')
    group.add_argument("--init-channels", type=int, help="DARTS' C: init widths C, 2C, 4C (default: 36)")
    group.add_argument("--stem-multiplier", type=int, help="stem width = multiplier × init channels (default: 3)")
    group.add_argument("--genotype", choices=sorted(GENOTYPES), help="cell genotype (default: PADDLESLIM_DARTS_V2)")
    group.add_argument("--in-channels", type=int, help="image channels (default: 3)")
    group.add_argument("--num-classes", type=int, help="classes (default: 10)")
    group.add_argument("--no-auxiliary", dest="auxiliary", action="store_false", default=None,
                       help="build no auxiliary head")


def space_from_args(args: argparse.Namespace) -> SearchSpace:
    names = ("layers", "filter_num", "init_channels", "stem_multiplier", "genotype", "in_channels",
             "num_classes", "auxiliary")
    config: dict[str, Any] = {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}
    return get_space(args.space, **config)


def cmd_info(args: argparse.Namespace, console: Console) -> int:
    from sanas.report import model_summary, render_summary

    space = space_from_args(args)
    if not hasattr(space, "counts"):
        raise CLIError(f"sanas info supports DartsSpace-like spaces only, not {space.name}")
    token_sets = [("init tokens", space.init_tokens())]
    for tokens in args.token or []:
        token_sets.append(("tokens", parse_tokens(tokens)))
    for title, tokens in token_sets:
        summary = model_summary(space, tokens, tuple(args.input_size))  # type: ignore[arg-type]
        console.print(render_summary(summary, title=f"{space.name} — {title}"))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sanas", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    info = sub.add_parser("info", help="per-cell summary (width, params, MACs) of token vectors",
                          description="Print a per-cell summary of the init tokens and of each --token given.")
    add_space_arguments(info)
    info.add_argument("--token", nargs="+", action="append", metavar="T",
                      help="a token vector, e.g. --token 5 5 0 5 ... (repeat the flag for several)")
    info.add_argument("--input-size", type=int, nargs=2, default=[32, 32], metavar=("H", "W"))
    info.set_defaults(run=cmd_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sanas`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    console = Console()
    try:
        return int(args.run(args, console))
    except (CLIError, ValueError) as exc:
        print(f"sanas {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
