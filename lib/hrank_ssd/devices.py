"""Which torch device to run on, and waiting for it: ``None`` means CUDA when a GPU is visible, else the CPU; a bad name is a
one-line :class:`~hrank_ssd.errors.HRankError` instead of torch's RuntimeError later on."""

from __future__ import annotations

import torch

from hrank_ssd.errors import HRankError


def resolve_device(name=None) -> torch.device:
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


def sync(device) -> None:
    """Wait for queued CUDA work on ``device`` (no-op on CPU): timings must not stop before the GPU does."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


__all__ = ["resolve_device", "sync"]
