"""Training checkpoints (``model_best.pth-{epoch}.tar`` + JSON sidecar) written atomically, found and checked."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Dict, Iterable, Optional

import torch

from hrank_ssd.errors import HRankError
from hrank_ssd.io.files import atomic_save, atomic_write_text
from hrank_ssd.nets.models import sidecar_path

CHECKPOINT_RE = re.compile(r"^model_best\.pth-(\d+)\.tar$")
CHECKPOINT_KEYS = ("model", "epoch", "optimizer", "sums", "rng", "args")  # what resuming reads


def checkpoint_path(folder, epoch: int) -> Path:
    """Where the checkpoint of ``epoch`` goes (mid-epoch ones too: the newest of an epoch replaces the older)."""
    return Path(folder) / f"model_best.pth-{epoch}.tar"


def final_model_path(folder, net: str, epoch: int, loss: float) -> Path:
    """The final model's file name, as pytorch-ssd names it: ``{net}-Epoch-{epoch}-Loss-{loss:.4f}.pth``."""
    return Path(folder) / f"{net}-Epoch-{epoch}-Loss-{loss:.4f}.pth"


def list_checkpoints(folder) -> Dict[int, Path]:
    """``{epoch: path}`` of the ``model_best.pth-{epoch}.tar`` files in ``folder``, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return {}
    found = {}
    for p in folder.iterdir():
        m = CHECKPOINT_RE.match(p.name)
        if m:
            found[int(m.group(1))] = p
    return dict(sorted(found.items()))


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
