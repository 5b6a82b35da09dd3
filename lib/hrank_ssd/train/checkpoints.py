"""What makes a run resumable bit for bit: its checkpoints (``model_best.pth-{epoch}.tar`` + JSON sidecar, written
atomically), seeds, data order and RNG states (docs/training.md)."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Dict, Iterable, List, Optional

import numpy as np
import torch

from hrank_ssd.errors import HRankError
from hrank_ssd.io.files import atomic_save, atomic_write_text
from hrank_ssd.nets.models import sidecar_path

CHECKPOINT_KEYS = ("model", "epoch", "optimizer", "sums", "rng", "args")  # what resuming reads


def checkpoint_path(folder, epoch: int) -> Path:
    """Where ``epoch``'s checkpoint goes (mid-epoch ones too: the newest of an epoch replaces the older)."""
    return Path(folder) / f"model_best.pth-{epoch}.tar"


def list_checkpoints(folder) -> Dict[int, Path]:
    """``{epoch: path}`` of the checkpoints in ``folder``, oldest first."""
    found = ((re.fullmatch(r"model_best\.pth-(\d+)\.tar", p.name), p) for p in Path(folder).glob("model_best.pth-*.tar"))
    return dict(sorted((int(m[1]), p) for m, p in found if m))


def resolve_resume(resume: Optional[str], folder) -> Optional[Path]:
    """``resume`` as a path, ``auto`` -> the newest ``model_best.pth-{epoch}.tar`` (None when there is none)."""
    if not resume:
        return None
    if resume == "auto":
        found = list_checkpoints(folder)
        return found[max(found)] if found else None
    path = Path(resume)
    if not path.is_file():
        raise HRankError(f"--resume {path}: no such checkpoint; pass a model_best.pth-N.tar file or --resume auto")
    return path


def read_checkpoint(path) -> dict:
    """A training checkpoint's dict, with a one-line error for a corrupt file or one that cannot resume a run."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise HRankError(f"cannot read checkpoint {path}: {type(e).__name__}; the file is corrupt, "
                         "resume from another model_best.pth-N.tar") from None
    missing = [k for k in CHECKPOINT_KEYS if k not in state] if isinstance(state, dict) else list(CHECKPOINT_KEYS)
    if missing:
        raise HRankError(f"{path} is not a training checkpoint (no {'/'.join(missing)}): resume from a "
                         "model_best.pth-N.tar written by `train`")
    return state


def write_checkpoint(folder, epoch: int, state: dict, meta: dict, keep: Iterable[Optional[int]]) -> Path:
    """Write ``state`` and its sidecar ``meta`` for ``epoch``, then delete those of epochs not in ``keep``."""
    path = checkpoint_path(folder, epoch)
    atomic_save(state, path)
    atomic_write_text(sidecar_path(path), json.dumps(meta))
    keep = set(keep) | {epoch}
    for e, old in list_checkpoints(folder).items():
        if e not in keep:
            old.unlink(missing_ok=True)
            sidecar_path(old).unlink(missing_ok=True)
    return path


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, rank: int = 0, world: int = 1) -> List[List[tuple]]:
    """This process's batches of ``(dataset index, augmentation seed)`` for ``epoch``, a pure function of ``(seed,
    epoch)``: its shard of each global batch of ``batch_size * world`` samples (wrapped as DistributedSampler does)."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch)).tolist()
    order += order[:(-n) % world]
    pairs = [(idx, int(np.random.SeedSequence([seed, epoch, pos]).generate_state(1)[0]))
             for pos, idx in enumerate(order)]
    g = batch_size * world
    chunks = [pairs[start:start + g] for start in range(0, len(pairs), g)]
    return [c[rank * (len(c) // world):(rank + 1) * (len(c) // world)] for c in chunks]


class SeededSamples(torch.utils.data.Dataset):
    """``dataset[(index, seed)]``: seeds python and numpy RNGs, then reads ``dataset[index]``."""

    def __init__(self, dataset):
        self.dataset = dataset

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
