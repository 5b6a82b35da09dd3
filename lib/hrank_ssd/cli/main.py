"""``python -m hrank_ssd <command>``: each other ``cli`` module adds its commands; user errors exit 2 in one line."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from pathlib import Path
from typing import Callable, Dict, Optional

from hrank_ssd import __version__
from hrank_ssd.errors import HRankError
from hrank_ssd.nets.compress import parse_compress_rate
from hrank_ssd.nets.registry import net_names
from hrank_ssd.train.config import CHOICES

BOOLS = {"1": True, "true": True, "yes": True, "y": True, "0": False, "false": False, "no": False, "n": False}


def shared_flags() -> Dict[str, dict]:
    """Flags several commands take: add_argument's keywords, built with each parser (a toy net may register
    late). --compress_rate is parsed here, at the edge."""
    return {
        "--net": dict(default="vgg16-ssd", choices=net_names(), help="network architecture"),
        "--device": dict(default=None, help="cpu or cuda (default: cuda when available)"),
        "--dataset": dict(required=True, help="VOC root (holds Annotations/, JPEGImages/, ImageSets/)"),
        "--base_net": dict(required=True, help="detector checkpoint (.pth)"),
        "--label_file": dict(default=None, help="class names, one per line, BACKGROUND first"),
        "--compress_rate": dict(type=parse_compress_rate, help='per-layer rates, e.g. "[0.1]*7+[0.5]*9"'),
        "--criterion": dict(default="hrank", choices=CHOICES["criterion"]),
        "--rank_dir": dict(default=None, help="folder of rank_conv{i}.npy (for --criterion hrank)"),
        "--round_to": dict(type=int, default=None, help="round kept filter counts up to a multiple of N"),
        "--seed": dict(type=int, default=0),
        "--num_classes": dict(type=int, default=21, help="classes incl. BACKGROUND (sizes the heads)"),
        "--width": dict(type=float, default=1.0, help="channel multiplier (small course/test models)"),
        "--image_size": dict(type=int, default=None, help="input side (default: the net's, 300)"),
        "--threads": dict(type=int, default=None, help="torch.set_num_threads (default: torch's)"),
        "--amp": dict(action="store_true", help="fp16 mixed precision (CUDA only)"),
        "--channels_last": dict(action="store_true", help="NHWC memory format (files stay the same)"),
        "--no_progress": dict(dest="progress", action="store_false", help="no progress bars"),
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hrank-ssd", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"hrank-ssd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="command", required=True)
    package = __name__.rpartition(".")[0]
    for info in sorted(pkgutil.iter_modules([str(Path(__file__).parent)]), key=lambda m: m.name):
        if info.name != "main":
            importlib.import_module(f"{package}.{info.name}").add_parser(sub)
    return parser


def command(sub, name: str, run: Callable[[argparse.Namespace], int], help: str, *shared: str):
    """Command ``name`` with the ``shared`` flags: ``run(args)`` runs it, its docstring describes it."""
    p = sub.add_parser(name, help=help, description=run.__doc__)
    p.set_defaults(func=run)
    flags = shared_flags()
    for flag in shared:
        p.add_argument(flag, **flags[flag])
    return p


def str2bool(v: str) -> bool:
    if v.lower() not in BOOLS:
        raise argparse.ArgumentTypeError(f"expected true or false, got {v!r}")
    return BOOLS[v.lower()]


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
    def run() -> int:
        args = build_parser().parse_args(argv)  # inside guarded: a bad --compress_rate is one line too
        return args.func(args)
    return guarded(run)
