"""Flags shared by several commands, with the original scripts' names, and the parser of one command."""

from __future__ import annotations

import argparse
from typing import Callable

from hrank_ssd.nets.compress import parse_compress_rate
from hrank_ssd.nets.registry import net_names


def command(sub, name: str, run: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
    """The parser of command ``name``: ``run(args)`` runs it, its docstring is the command's description."""
    p = sub.add_parser(name, help=help, description=run.__doc__)
    p.set_defaults(func=run)
    return p


def add_net(p: argparse.ArgumentParser, default: str = "vgg16-ssd") -> None:
    p.add_argument("--net", default=default, choices=net_names(), help="network architecture")


def add_compress_rate(p: argparse.ArgumentParser) -> None:
    p.add_argument("--compress_rate", default=None, help='per-layer rates, HRank syntax, e.g. "[0.1]*7+[0.5]*9"')


def compress_rate_of(args: argparse.Namespace):
    """``--compress_rate`` parsed once, here at the edge (a list of rates, or None when not given)."""
    return None if args.compress_rate is None else parse_compress_rate(args.compress_rate)


def str2bool(v: str) -> bool:
    if v.lower() in ("1", "true", "yes", "y"):
        return True
    if v.lower() in ("0", "false", "no", "n"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {v!r}")


def device_arg(p: argparse.ArgumentParser, default=None) -> None:
    p.add_argument("--device", default=default, help="cpu or cuda" + ("" if default else " (default: cuda when available)"))
