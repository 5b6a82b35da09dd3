"""Flags shared by several commands, with the original scripts' names."""

from __future__ import annotations

import argparse

from ..config import NETS


def add_net(p: argparse.ArgumentParser, default: str = "vgg16-ssd") -> None:
    p.add_argument("--net", default=default, choices=NETS, help="network architecture")


def add_compress_rate(p: argparse.ArgumentParser) -> None:
    p.add_argument("--compress_rate", default=None,
                   help='per-layer pruning rates, e.g. "[0.1]*7+[0.5]*9" (original HRank syntax)')


def str2bool(v: str) -> bool:
    if v.lower() in ("1", "true", "yes", "y"):
        return True
    if v.lower() in ("0", "false", "no", "n"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {v!r}")


def device_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")


def resolve_device(name):
    import torch

    from ..errors import HRankError

    if not name:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise HRankError(f"unknown --device {name!r}: use cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise HRankError("--device cuda asked for but no CUDA GPU is visible; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise HRankError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA GPU(s), "
                             f"numbered from 0")
    return device
