"""What makes a run repeatable and resumable bit for bit: seeds, data order and RNG states (docs/training.md)."""

from __future__ import annotations

import os
import random
from typing import List

import numpy as np
import torch


def draw_seed() -> int:
    """A fresh random seed for a run started without ``--seed`` (printed and stored, so it can be repeated)."""
    return int.from_bytes(os.urandom(4), "little") % (2 ** 31)


def seed_all(seed: int) -> None:
    """Seed torch, python and numpy (numpy takes the seed modulo 2**32)."""
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The permutation of the ``n`` training samples for ``epoch``: a pure function of ``(seed, epoch)``."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g)


def sample_seed(seed: int, epoch: int, position: int) -> int:
    """The augmentation seed of the sample at ``position`` of ``epoch``'s order."""
    return int(np.random.SeedSequence([seed, epoch, position]).generate_state(1)[0])


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, rank: int = 0, world: int = 1) -> List[List[tuple]]:
    """This process's batches of ``(dataset index, augmentation seed)`` for ``epoch``: its shard of each global
    batch of ``batch_size * world`` samples (wrapped around as DistributedSampler does)."""
    order = epoch_order(n, seed, epoch).tolist()
    pad = (-n) % world
    order += order[:pad]
    pairs = [(idx, sample_seed(seed, epoch, pos)) for pos, idx in enumerate(order)]
    g = batch_size * world
    out = []
    for start in range(0, len(pairs), g):
        chunk = pairs[start:start + g]
        per = len(chunk) // world
        out.append(chunk[rank * per:(rank + 1) * per])
    return out


class SeededSamples(torch.utils.data.Dataset):
    """``dataset[(index, seed)]``: seeds python and numpy RNGs, then reads ``dataset[index]``."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, item):
        index, seed = item
        random.seed(seed)
        np.random.seed(seed)
        return self.dataset[index]


def rng_state() -> dict:
    """The torch, python, numpy (and CUDA) RNG states, as a checkpoint stores them (tensors and plain types)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` captured (CUDA states only on a machine with as many GPUs)."""
    torch.set_rng_state(state["torch"])
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
