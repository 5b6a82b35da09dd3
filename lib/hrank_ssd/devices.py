"""The torch device to run on (``None``: CUDA when visible, else CPU). Library functions use :func:`model_on`
and :func:`evaluating`, never ``model.to(device).eval()``, so the caller's model stays where and as it was."""

from __future__ import annotations

import copy
from contextlib import contextmanager
from typing import Iterator

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


def model_on(model: torch.nn.Module, device, channels_last: bool = False) -> torch.nn.Module:
    """``model`` itself when already on ``device`` (and channels-last if asked), else a copy moved there: the
    caller's model is never moved or converted; what is no ``nn.Module`` comes back as it is."""
    if not isinstance(model, torch.nn.Module):
        return model
    device = torch.device(device)
    tensors = [*model.parameters(), *model.buffers()]
    fmt = torch.channels_last if channels_last else torch.preserve_format
    if all(t.device.type == device.type and device.index in (None, t.device.index)
           and (not channels_last or t.dim() != 4 or t.is_contiguous(memory_format=fmt)) for t in tensors):
        return model
    return copy.deepcopy(model).to(device=device, memory_format=fmt)


@contextmanager
def evaluating(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """``model`` in eval mode inside the block; every submodule's own training flag is restored after it."""
    if not isinstance(model, torch.nn.Module):
        yield model
        return
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training
