"""What a run is told: :class:`TrainConfig`, its checks, the learning rate per epoch, and the class names, base net,
distillation teacher and data sets it implies."""

from __future__ import annotations

import dataclasses
import math
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch
from torch.utils.data import Dataset

from hrank_ssd.data import voc
from hrank_ssd.data.augment import LightAugmentation, TrainAugmentation
from hrank_ssd.errors import HRankError
from hrank_ssd.nets import models
from hrank_ssd.nets.priors import MatchPrior
from hrank_ssd.nets.ssd import SSD

# the allowed values of the options that take a word (the CLI offers the same as its choices)
CHOICES = {"scheduler": ("cosine", "multistep"), "criterion": ("hrank", "l1", "random"), "augment": ("ssd", "light"),
           "optimizer": ("sgd", "adam"), "init": ("default", "lsuv")}
AUGMENTATIONS = {"ssd": TrainAugmentation, "light": LightAugmentation}
LSUV_IMAGES = 16  # training images (test-transformed) that LSUV calibrates activations on


@dataclasses.dataclass
class TrainConfig:
    """Every knob of a training run; names match the ``train`` command's flags."""

    datasets: List[str] = dataclasses.field(default_factory=list)
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


def as_config(config: TrainConfig) -> TrainConfig:
    """A checked private copy of ``config``."""
    cfg = dataclasses.replace(config)
    if not cfg.datasets:
        raise HRankError("no training dataset: pass --datasets DIR [DIR ...]")
    if not cfg.validation_dataset:
        raise HRankError("no validation dataset: pass --validation_dataset DIR")
    for name in ("max_images", "batch_size", "num_epochs"):
        if getattr(cfg, name) is not None and int(getattr(cfg, name)) < 1:
            raise HRankError(f"--{name} must be at least 1, got {getattr(cfg, name)}")
    for name in ("lr", "grad_clip"):
        if getattr(cfg, name) is not None and getattr(cfg, name) <= 0:
            raise HRankError(f"--{name} must be positive, got {getattr(cfg, name)}")
    for flag, allowed in CHOICES.items():
        if getattr(cfg, flag) not in allowed:
            raise HRankError(f"unknown --{flag} {getattr(cfg, flag)!r}: use {', '.join(allowed[:-1])} or {allowed[-1]}")
    milestones(cfg)
    return cfg


def milestones(cfg: TrainConfig) -> List[int]:
    """``--milestones "80,100"`` -> ``[80, 100]``, the epochs where the multistep schedule multiplies by gamma."""
    try:
        return [int(m) for m in str(cfg.milestones).split(",") if m.strip()]
    except ValueError:
        raise HRankError(f"--milestones {cfg.milestones!r} is not a comma-separated list of epochs, "
                         "e.g. 80,100") from None


def learning_rate(cfg: TrainConfig, epoch: int) -> float:
    """The LR used during ``epoch`` (0-based): closed-form cosine annealing or multi-step decay."""
    if cfg.scheduler == "cosine":
        t_max = cfg.t_max or cfg.num_epochs
        return cfg.lr * (1 + math.cos(math.pi * min(epoch, t_max) / t_max)) / 2
    return cfg.lr * cfg.gamma ** sum(epoch >= m for m in milestones(cfg))  # multistep


def class_names(cfg: TrainConfig) -> List[str]:
    """``--label_file``'s names, else the first dataset's label file, else BACKGROUND + the VOC classes."""
    if cfg.label_file:
        return list(voc.read_labels(cfg.label_file))
    first = Path(cfg.datasets[0])
    if not first.is_dir():
        raise HRankError(f"dataset folder {first} not found: pass a VOCdevkit/VOC2007-style folder")
    return list(voc.dataset_labels(first))


def load_base_net(path, net: str, num_classes: int, width: float, image_size: Optional[int]) -> SSD:
    """``--base_net``: a detector (of another class count: all but its classifiers) or a bare backbone."""
    state = models.read_state_dict(path)
    if "base_net.0.weight" in state or "base_net.0.0.weight" in state:
        return _detector_as_base_net(state, path, net, num_classes, image_size)
    model = models.build_model(net, num_classes, width=width, image_size=image_size)
    try:
        model.base_net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).split("\n\t", 1)[-1].splitlines()[0][:160]
        raise HRankError(f"--base_net {path} is neither an SSD checkpoint nor a {net} backbone "
                         f"(width {width}): {first}") from None
    return model


def _detector_as_base_net(state: Dict[str, torch.Tensor], path, net: str, num_classes: int,
                          image_size: Optional[int]) -> SSD:
    found = models.detect_net(state)
    if found != net:
        raise HRankError(f"--base_net {path} is a {found} checkpoint, not {net}: pass --net {found}")
    size = image_size or models.read_sidecar(path).get("image_size")
    classes = models.num_classes_of(state, net, path)
    if classes == num_classes:
        return models.load_model(path, net=net, image_size=size, state=state)
    model = models.build_model(net, num_classes, plan=models.plan_from_state_dict(state, net), image_size=size)
    keep = {k: v for k, v in state.items() if not k.startswith("classification_headers.")}
    model.load_state_dict(keep, strict=False)
    warnings.warn(f"{path} predicts {classes} classes, the label file {num_classes}: "
                  "classification headers start from random weights", stacklevel=3)
    return model


def load_teacher(cfg: TrainConfig, num_classes: int, student: SSD, device: torch.device) -> SSD:
    """The frozen ``--distill_from`` model (eval mode, no gradients); it must share the student's priors."""
    teacher = models.load_model(cfg.distill_from, net=cfg.net, num_classes=num_classes,
                                image_size=student.image_size).to(device).eval().requires_grad_(False)
    if teacher.priors.shape != student.priors.shape:
        raise HRankError(f"--distill_from {cfg.distill_from} has another input size/prior layout "
                         "than the student: use the unpruned model the student came from")
    return teacher


def make_datasets(cfg: TrainConfig, model: SSD, names: List[str]) -> Tuple[Dataset, voc.VOCDataset, voc.VOCDataset]:
    """``(train, validation, evaluation)`` sets: augmented, test-transformed (both matched to priors), raw."""
    ncfg = model.cfg
    target = MatchPrior(model.priors.cpu(), ncfg)
    augment = AUGMENTATIONS[cfg.augment](model.image_size, ncfg.image_mean, ncfg.image_std)
    train_set = voc.make_dataset(cfg.datasets, cfg.train_split, augment, target, keep_difficult=cfg.keep_difficult,
                                 class_names=names)
    test_transform = voc.TestTransform(model.image_size, ncfg.image_mean, ncfg.image_std)
    val_set = voc.VOCDataset(cfg.validation_dataset, cfg.validation_split, test_transform, target, class_names=names,
                             is_test=True)
    eval_set = voc.VOCDataset(cfg.validation_dataset, cfg.validation_split, class_names=names, is_test=True)
    if cfg.max_images:
        train_set = torch.utils.data.Subset(train_set, range(min(cfg.max_images, len(train_set))))
        for ds in (val_set, eval_set):
            ds.ids = ds.ids[:cfg.max_images]
    return train_set, val_set, eval_set
