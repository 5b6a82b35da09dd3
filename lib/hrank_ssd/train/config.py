"""What a training run is told: :class:`TrainConfig`, its checks, and the learning rate it implies per epoch."""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import List, Optional, Union

from hrank_ssd.errors import HRankError

# the allowed values of the options that take a word (the CLI offers the same as its choices)
CHOICES = {
    "scheduler": ("cosine", "multistep"),
    "criterion": ("hrank", "l1", "random"),
    "augment": ("ssd", "light"),
    "optimizer": ("sgd", "adam"),
    "init": ("default", "lsuv"),
}


@dataclass
class TrainConfig:
    """Every knob of a training run; names match the ``train`` command's flags."""

    datasets: List[str] = field(default_factory=list)
    validation_dataset: Optional[str] = None
    label_file: Optional[str] = None
    net: str = "vgg16-ssd"
    base_net: Optional[str] = None
    freeze_base_net: bool = False
    batch_size: int = 32
    num_epochs: int = 120
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    gamma: float = 0.1
    scheduler: str = "cosine"
    optimizer: str = "sgd"  # sgd (the original) or adam (small models trained from scratch)
    augment: str = "ssd"  # ssd: full SSD augmentation; light: photometric + flip only
    init: str = "default"  # from scratch only: default (PyTorch's) or lsuv (see models.init_from_scratch)
    milestones: str = "80,100"
    t_max: Optional[float] = None  # cosine period in epochs; default num_epochs
    checkpoint_folder: str = "models"
    num_workers: int = 0
    width: float = 1.0
    image_size: Optional[int] = None
    train_split: Optional[str] = None  # default trainval
    max_images: Optional[int] = None  # train and validate on the first N images of each set only (quick trials)
    validation_split: Optional[str] = None  # default test
    keep_difficult: bool = False
    seed: Optional[int] = None
    device: Optional[str] = None
    validation_epochs: int = 5  # mAP every N epochs (and at the last one); 0 = never
    checkpoint_every_steps: int = 0
    resume: Optional[str] = None  # a checkpoint path or "auto"
    rank_dir: Optional[str] = None
    compress_rate: Optional[List[float]] = None  # parsed by the caller (CLI, profile)
    criterion: str = "hrank"
    round_to: Optional[int] = None
    amp: bool = False
    channels_last: bool = False  # train in the NHWC memory layout (benchmarks/train_layout.md); files stay NCHW
    grad_clip: Optional[float] = None
    bn_eval: bool = False
    distill_from: Optional[str] = None
    distill_alpha: float = 1.0
    distill_T: float = 4.0
    progress: bool = True

    @classmethod
    def from_namespace(cls, ns) -> TrainConfig:
        """The config from an argparse namespace holding (at least) these names; other attributes are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in vars(ns).items() if k in names})


def as_config(config: Union[TrainConfig, dict]) -> TrainConfig:
    """A private, checked copy of ``config`` (a :class:`TrainConfig` or a dict of its fields)."""
    if isinstance(config, TrainConfig):
        cfg = dataclasses.replace(config)
    elif isinstance(config, dict):
        cfg = TrainConfig(**config)
    else:
        raise TypeError("train() takes a TrainConfig or a dict (convert an argparse.Namespace with "
                        "TrainConfig.from_namespace)")
    check_config(cfg)
    return cfg


def _one_of(allowed) -> str:
    return ", ".join(allowed[:-1]) + " or " + allowed[-1]


def check_config(cfg: TrainConfig) -> None:
    """Raise a one-line :class:`HRankError` for a config no run can start from (a lone dataset becomes a list)."""
    if isinstance(cfg.datasets, (str, os.PathLike)):
        cfg.datasets = [cfg.datasets]
    if not cfg.datasets:
        raise HRankError("no training dataset: pass --datasets DIR [DIR ...]")
    if not cfg.validation_dataset:
        raise HRankError("no validation dataset: pass --validation_dataset DIR")
    if cfg.max_images is not None and int(cfg.max_images) < 1:
        raise HRankError(f"--max_images must be at least 1, got {cfg.max_images}")
    for name in ("batch_size", "num_epochs"):
        if int(getattr(cfg, name)) < 1:
            raise HRankError(f"--{name} must be at least 1, got {getattr(cfg, name)}")
    if cfg.lr <= 0:
        raise HRankError(f"--lr must be positive, got {cfg.lr}")
    for flag, allowed in CHOICES.items():
        value = getattr(cfg, flag)
        if value not in allowed:
            raise HRankError(f"unknown --{flag} {value!r}: use {_one_of(allowed)}")
    parse_milestones(cfg.milestones)
    if cfg.grad_clip is not None and cfg.grad_clip <= 0:
        raise HRankError(f"--grad_clip must be positive, got {cfg.grad_clip}")


def parse_milestones(text) -> List[int]:
    """``"80,100"`` (or a list) -> ``[80, 100]``: the epochs where the multistep schedule multiplies by gamma."""
    if isinstance(text, (list, tuple)):
        return [int(m) for m in text]
    try:
        return [int(m) for m in str(text).split(",") if m.strip()]
    except ValueError:
        raise HRankError(f"--milestones {text!r} is not a comma-separated list of epochs, e.g. 80,100") from None


def learning_rate(cfg: TrainConfig, epoch: int) -> float:
    """The LR used during ``epoch`` (0-based): closed-form cosine annealing or multi-step decay."""
    if cfg.scheduler == "cosine":
        t_max = cfg.t_max or cfg.num_epochs
        return cfg.lr * (1 + math.cos(math.pi * min(epoch, t_max) / t_max)) / 2
    if cfg.scheduler == "multistep":
        return cfg.lr * cfg.gamma ** sum(epoch >= m for m in parse_milestones(cfg.milestones))
    raise HRankError(f"unknown --scheduler {cfg.scheduler!r}: use {_one_of(CHOICES['scheduler'])}")
