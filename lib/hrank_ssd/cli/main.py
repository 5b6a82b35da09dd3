"""``python -m hrank_ssd <command>``: the commands of every other module of ``hrank_ssd.cli``, each adding its own with
``add_parser(subparsers)``; the flags several share, with the original scripts' names; user errors exit 2 in one line."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from pathlib import Path
from typing import Callable, Optional

from hrank_ssd import __version__
from hrank_ssd.errors import HRankError
from hrank_ssd.nets.compress import parse_compress_rate
from hrank_ssd.nets.registry import net_names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hrank-ssd", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"hrank-ssd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="command", required=True)
    package = __name__.rpartition(".")[0]
    for info in sorted(pkgutil.iter_modules([str(Path(__file__).parent)]), key=lambda m: m.name):
        if info.name != "main":
            importlib.import_module(f"{package}.{info.name}").add_parser(sub)
    return parser


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


def one_line(error: HRankError) -> str:
    """The message itself (of a DataLoader worker's error, its traceback's last line)."""
    text = str(error)
    if "Original Traceback" in text:
        return [ln for ln in text.splitlines() if ln.strip()][-1].split("HRankError: ", 1)[-1]
    return text


def guarded(run: Callable[[], Optional[int]]) -> int:
    """Run a command's body: an HRankError or OSError is one line on stderr and exit status 2, Ctrl-C status 130."""
    try:
        return int(run() or 0)
    except HRankError as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    except OSError as e:  # unwritable output, a folder where a file is expected, a full disk...
        path = e.filename2 or e.filename  # a failed rename of a staged file names the target second
        where = f" ({path})" if path else ""
        print(f"error: {e.strerror or e}{where}: check the path and its permissions", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: checkpoints written so far are kept", file=sys.stderr)
        return 130


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return guarded(lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
