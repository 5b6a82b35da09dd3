"""``python -m hrank_ssd <command>``: the commands of every module of ``hrank_ssd.cli`` (beside ``main`` and ``args``).
Each defines ``add_parser(subparsers)`` adding its commands; user errors exit 2 in one line."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from pathlib import Path
from typing import Callable, Optional

from hrank_ssd import __version__
from hrank_ssd.errors import HRankError

NOT_COMMANDS = {"main", "args"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hrank-ssd", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"hrank-ssd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="command", required=True)
    package = __name__.rpartition(".")[0]
    for info in sorted(pkgutil.iter_modules([str(Path(__file__).parent)]), key=lambda m: m.name):
        if info.name not in NOT_COMMANDS:
            importlib.import_module(f"{package}.{info.name}").add_parser(sub)
    return parser


def one_line(error: HRankError) -> str:
    """The message itself (of a DataLoader worker's error, its traceback's last line)."""
    text = str(error)
    if "Original Traceback" in text:
        text = [ln for ln in text.splitlines() if ln.strip()][-1]
        text = text.split("HRankError: ", 1)[-1]
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
