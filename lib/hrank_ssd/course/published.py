"""The original project's published results, read from their one copy, ``published.json``."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Dict

import pandas as pd

from hrank_ssd.errors import HRankError

PUBLISHED_FILE = Path(__file__).with_name("published.json")
MODELS = ("vgg16-ssd", "vgg16-ssd-pruned", "mb1-ssd")  # the models they published, in the course's order


@functools.cache
def published(path=PUBLISHED_FILE) -> dict:
    """The whole file, parsed (cached): ``source``, ``environment``, ``metric``, ``finetune``, ``ranks``, ``models``."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if tuple(data["models"]) != MODELS or not all(m["ap"] for m in data["models"].values()):
            raise ValueError(f"models {tuple(data['models'])}, expected {MODELS} with per-class APs")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise HRankError(f"{path} is not the published results file ({str(e).splitlines()[0]}): restore it from "
                         f"the repository (lib/hrank_ssd/course/{Path(path).name})") from None
    return data


def source_line() -> str:
    """Where the numbers come from, in one line (for captions)."""
    return "{source}; {environment}; {metric}".format(**published())


def published_map() -> Dict[str, float]:
    """Their mAP per model key."""
    return {k: float(m["mAP"]) for k, m in published()["models"].items()}


def published_predict_ms() -> Dict[str, float]:
    """Their eval script's average predict time per image (ms) per model key, measured on their T4."""
    return {k: 1000.0 * float(m["avg_predict_s"]) for k, m in published()["models"].items()}


def published_ap() -> pd.DataFrame:
    """Their per-class AP: one row per VOC class, one column per model key (in :data:`MODELS` order)."""
    models = published()["models"]
    return pd.DataFrame({k: pd.Series(m["ap"], dtype=float) for k, m in models.items()}).rename_axis("class")


def published_finetune() -> dict:
    """Their finetune of the pruned VGG16-SSD: dataset, batch size, epochs, learning rate, schedule, command."""
    return dict(published()["finetune"])


def slower_pruned_line() -> str:
    """One sentence on their T4 predict times: the pruned VGG16-SSD against the unpruned one, from the file."""
    full, pruned = published_predict_ms()["vgg16-ssd"], published_predict_ms()["vgg16-ssd-pruned"]
    return (f"On their T4 the pruned VGG16-SSD predicted in {pruned:.1f} ms per image against {full:.1f} ms "
            f"unpruned ({pruned / full:.2f}x the time): {'slower' if pruned > full else 'faster'} than the model it "
            f"was pruned from, with fewer MACs (their Avg predictime, {published()['environment']}).")
