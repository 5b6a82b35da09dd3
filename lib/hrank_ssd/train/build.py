"""What a run starts from: class names, the student, the distillation teacher, the data sets, the optimizer."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch

from hrank_ssd.data.augment import LightAugmentation, TrainAugmentation
from hrank_ssd.data.voc import (
    VOC_CLASSES,
    TestTransform,
    VOCDataset,
    find_label_file,
    make_dataset,
    read_labels,
)
from hrank_ssd.errors import HRankError
from hrank_ssd.hrank.pruning import prune_model
from hrank_ssd.nets.compress import layer_rates
from hrank_ssd.nets.models import (
    build_model,
    detect_net,
    init_from_scratch,
    load_model,
    model_from_state_dict,
    num_classes_of,
    plan_from_state_dict,
    read_sidecar,
    read_state_dict,
)
from hrank_ssd.nets.priors import MatchPrior
from hrank_ssd.nets.registry import num_prunable
from hrank_ssd.nets.ssd import SSD
from hrank_ssd.train.config import TrainConfig

AUGMENTATIONS = {"ssd": TrainAugmentation, "light": LightAugmentation}
LSUV_IMAGES = 16  # training images (test-transformed) that LSUV calibrates activations on


def class_names(cfg: TrainConfig) -> List[str]:
    """``--label_file``'s names, else the first dataset's label file, else BACKGROUND + the VOC classes."""
    if cfg.label_file:
        return list(read_labels(cfg.label_file))
    first = Path(cfg.datasets[0])
    if not first.is_dir():
        raise HRankError(f"dataset folder {first} not found: pass a VOCdevkit/VOC2007-style folder")
    found = find_label_file(first)
    return list(read_labels(found)) if found else ["BACKGROUND", *VOC_CLASSES]


def load_base_net(path, net: str, num_classes: int, width: float, image_size: Optional[int]) -> SSD:
    """Initial weights from ``--base_net``: a detector (another class count: all but the classification headers),
    or a bare backbone (``vgg16_reducedfc.pth``) loaded strictly into a new model's ``base_net``."""
    state = read_state_dict(path)
    if "base_net.0.weight" in state or "base_net.0.0.weight" in state:
        return _detector_as_base_net(state, path, net, num_classes, image_size)
    model = build_model(net, num_classes, width=width, image_size=image_size)
    try:
        model.base_net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).split("\n\t", 1)[-1].splitlines()[0][:160]
        raise HRankError(f"--base_net {path} is neither an SSD checkpoint nor a {net} backbone "
                         f"(width {width}): {first}") from None
    return model


def _detector_as_base_net(state: Dict[str, torch.Tensor], path, net: str, num_classes: int,
                          image_size: Optional[int]) -> SSD:
    found = detect_net(state)
    if found != net:
        raise HRankError(f"--base_net {path} is a {found} checkpoint, not {net}: pass --net {found}")
    size = image_size or read_sidecar(path).get("image_size")
    classes = num_classes_of(state, net, path)
    if classes == num_classes:
        return model_from_state_dict(state, path, net=net, image_size=size)
    model = build_model(net, num_classes, plan=plan_from_state_dict(state, net), image_size=size)
    keep = {k: v for k, v in state.items() if not k.startswith("classification_headers.")}
    model.load_state_dict(keep, strict=False)
    warnings.warn(f"{path} predicts {classes} classes, the label file {num_classes}: "
                  "classification headers start from random weights", stacklevel=3)
    return model


def resumed_model(cfg: TrainConfig, state: dict, path: Path, num_classes: int) -> SSD:
    """The model of a training checkpoint; its image size becomes ``cfg.image_size`` unless one was given."""
    size = state["args"].get("image_size") or read_sidecar(path).get("image_size")
    cfg.image_size = cfg.image_size or size
    return model_from_state_dict(state["model"], path, net=cfg.net, num_classes=num_classes,
                                 image_size=cfg.image_size)


def fresh_model(cfg: TrainConfig, num_classes: int) -> Tuple[SSD, bool]:
    """``(model, from scratch?)``: ``--base_net``'s weights, else a new model of ``--width``."""
    if not cfg.base_net:
        return build_model(cfg.net, num_classes, width=cfg.width, image_size=cfg.image_size), True
    model = load_base_net(cfg.base_net, cfg.net, num_classes, cfg.width, cfg.image_size)
    if model.num_classes != num_classes:
        raise HRankError(f"--base_net {cfg.base_net} predicts {model.num_classes} classes but the label "
                         f"file has {num_classes}")
    return model, False


def prune_base_net(model: SSD, cfg: TrainConfig) -> Tuple[SSD, List[float], Dict[str, List[int]]]:
    """``(pruned model, per-layer rates, kept filter indices)``: ``--compress_rate`` applied to ``--base_net``."""
    if not cfg.base_net:
        raise HRankError("--compress_rate prunes a trained model: pass it with --base_net MODEL.pth")
    rates = layer_rates(cfg.compress_rate, num_prunable(cfg.net))
    model, kept = prune_model(model, rates, cfg.criterion, cfg.rank_dir, cfg.seed, cfg.round_to)
    return model, rates, kept


def load_teacher(cfg: TrainConfig, num_classes: int, student: SSD, device: torch.device) -> SSD:
    """The frozen ``--distill_from`` model (eval mode, no gradients); it must share the student's priors."""
    teacher = load_model(cfg.distill_from, net=cfg.net, num_classes=num_classes,
                         image_size=student.image_size).to(device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    if teacher.priors.shape != student.priors.shape:
        raise HRankError(f"--distill_from {cfg.distill_from} has another input size/prior layout "
                         "than the student: use the unpruned model the student came from")
    return teacher


def make_datasets(cfg: TrainConfig, model: SSD, names: List[str]) -> Tuple[VOCDataset, VOCDataset, VOCDataset]:
    """``(train, validation, evaluation)`` sets: augmented, test-transformed (both matched to priors), raw."""
    ncfg = model.cfg
    target = MatchPrior(model.priors.cpu(), ncfg)
    augment = AUGMENTATIONS[cfg.augment](model.image_size, ncfg.image_mean, ncfg.image_std)
    train_set = make_dataset(cfg.datasets, cfg.train_split, augment, target, keep_difficult=cfg.keep_difficult,
                             class_names=names)
    val_set = VOCDataset(cfg.validation_dataset, cfg.validation_split,
                         TestTransform(model.image_size, ncfg.image_mean, ncfg.image_std), target,
                         class_names=names, is_test=True)
    eval_set = VOCDataset(cfg.validation_dataset, cfg.validation_split, class_names=names, is_test=True)
    if cfg.max_images:
        train_set = torch.utils.data.Subset(train_set, range(min(cfg.max_images, len(train_set))))
        for ds in (val_set, eval_set):
            ds.ids = ds.ids[:cfg.max_images]
    return train_set, val_set, eval_set


def lsuv_init(model: SSD, cfg: TrainConfig, names: List[str], device: torch.device) -> None:
    """``--init lsuv``: calibrate a new model on the first training images (every process alike)."""
    ncfg = model.cfg
    plain = VOCDataset(cfg.datasets[0], cfg.train_split, TestTransform(model.image_size, ncfg.image_mean,
                                                                       ncfg.image_std), class_names=names)
    sample = torch.stack([plain[i][0] for i in range(min(LSUV_IMAGES, len(plain)))])
    init_from_scratch(model, sample.to(device))


def make_optimizer(cfg: TrainConfig, params: List[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """Adam, or SGD with ``--momentum`` and ``--weight_decay``, over ``params`` at ``--lr``."""
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
