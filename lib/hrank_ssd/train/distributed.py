"""Several processes training one model (torchrun): process group, devices, global BatchNorm, DDP, averages."""

from __future__ import annotations

import os
import warnings
from contextlib import contextmanager
from typing import Iterator, Optional, Tuple

import torch
import torch.distributed as dist
from torch import nn

from hrank_ssd.devices import resolve_device


@contextmanager
def process_group(device_name: Optional[str]) -> Iterator[Tuple[int, int]]:
    """``(rank, world size)``, ``(0, 1)`` without torchrun; a group made here (nccl on CUDA, else gloo) ends after."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    created = world > 1 and not dist.is_initialized()
    if created:
        use_cuda = torch.cuda.is_available() and not (device_name or "").startswith("cpu")
        dist.init_process_group("nccl" if use_cuda else "gloo")
    try:
        yield (dist.get_rank(), dist.get_world_size()) if world > 1 else (0, 1)
    finally:
        if created and dist.is_initialized():
            dist.destroy_process_group()


def process_device(name: Optional[str], world: int) -> torch.device:
    """``--device`` for this process: with several processes a bare ``cuda`` means the GPU of ``LOCAL_RANK``."""
    device = resolve_device(name)
    if device.type == "cuda" and world > 1 and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    return device


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d (affine, momentum, running statistics: the nets' kind) with statistics over every process, for
    gloo (no SyncBatchNorm); same state dict."""

    def forward(self, x):
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        with warnings.catch_warnings():  # torch marks these differentiable collectives deprecated
            warnings.simplefilter("ignore", FutureWarning)
            # imported only in a multi-process run: torch builds without distributed support lack the module
            from torch.distributed.nn.functional import all_reduce

            c, shape = x.size(1), (1, x.size(1), 1, 1)
            sums = all_reduce(torch.cat([x.sum((0, 2, 3)), x.new_tensor([x.numel() / c])]))
            total, mean = sums[c], sums[:c] / sums[c]
            d = x - mean.view(shape)
            var = all_reduce((d * d).sum((0, 2, 3))) / total
        with torch.no_grad():
            self.num_batches_tracked += 1
            self.running_mean.mul_(1 - self.momentum).add_(mean, alpha=self.momentum)
            self.running_var.mul_(1 - self.momentum).add_(var * total / (total - 1).clamp(min=1), alpha=self.momentum)
        return d * torch.rsqrt(var + self.eps).view(shape) * self.weight.view(shape) + self.bias.view(shape)


def wrap_for_ddp(model: nn.Module, device: torch.device) -> Tuple[nn.Module, nn.Module]:
    """``(model, ddp)``: global BatchNorm, DDP wrapper; the returned model (the one to save) may be a new object."""
    if device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    else:
        for m in model.modules():
            if type(m) is nn.BatchNorm2d:
                m.__class__ = GlobalBatchNorm2d
    ddp = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    return model, ddp


def mean_over_processes(t: torch.Tensor, world: int) -> torch.Tensor:
    """``t`` averaged over the ``world`` processes (in place; ``t`` itself when there is one process)."""
    if world > 1:
        dist.all_reduce(t)
        t /= world
    return t


def broadcast_int(value: int, world: int) -> int:
    """Process 0's ``value`` in every process."""
    box = [value]
    if world > 1:
        dist.broadcast_object_list(box, 0)  # on NCCL through this process's current GPU
    return int(box[0])
