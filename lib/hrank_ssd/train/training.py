"""Train or finetune an SSD: the loop, resumable atomic checkpoints, logs and curves.

``train(TrainConfig(...))`` (or an argparse namespace with the same names) runs the whole job;
``python -m hrank_ssd train`` only maps its flags onto :class:`TrainConfig`.

Determinism: the data order of epoch ``e`` is ``torch.randperm`` driven by a generator seeded with
``(seed, e)``; the augmentation of each sample is seeded from ``(seed, e, position in the epoch
order)``; the learning rate is a pure function of the epoch. A checkpoint stores model, optimizer,
AMP scaler, epoch, step inside the epoch, running sums and RNG states, so a resumed run (after
whole epochs or mid-epoch with ``checkpoint_every_steps``) continues bit-for-bit on CPU. The same
per-position seeds make N processes with batch ``b`` see the same samples, augmented the same way,
as one process with batch ``N*b``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import random
import re
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Union

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from hrank_ssd.errors import HRankError
from hrank_ssd.io.files import atomic_savefig
from hrank_ssd.nets.models import (
    NUM_PRUNABLE,
    SSD,
    atomic_save,
    atomic_write_text,
    build_model,
    clean_state_dict,
    detect_net,
    init_from_scratch,
    load_model,
    model_from_state_dict,
    num_classes_of,
    plan_from_state_dict,
    read_sidecar,
    save_model,
    sidecar_path,
)
from hrank_ssd.train.losses import MultiBoxLoss

CHECKPOINT_RE = re.compile(r"^model_best\.pth-(\d+)\.tar$")
CHECKPOINT_KEYS = ("model", "epoch", "optimizer", "sums", "rng", "args")  # what resuming reads
LOG_COLUMNS = ["epoch", "train_loss", "train_regression_loss", "train_classification_loss",
               "train_distillation_loss", "val_loss", "val_regression_loss", "val_classification_loss",
               "mAP", "lr", "time_s"]


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
    validation_split: Optional[str] = None  # default test
    keep_difficult: bool = False
    seed: Optional[int] = None
    device: Optional[str] = None
    validation_epochs: int = 5  # mAP every N epochs (and at the last one); 0 = never
    checkpoint_every_steps: int = 0
    resume: Optional[str] = None  # a checkpoint path or "auto"
    rank_dir: Optional[str] = None
    compress_rate: Optional[str] = None
    criterion: str = "hrank"
    round_to: Optional[int] = None
    amp: bool = False
    grad_clip: Optional[float] = None
    bn_eval: bool = False
    distill_from: Optional[str] = None
    distill_alpha: float = 1.0
    distill_T: float = 4.0
    progress: bool = True

    @classmethod
    def from_namespace(cls, ns: argparse.Namespace) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in vars(ns).items() if k in names})


@dataclass
class TrainResult:
    model: SSD
    history: List[dict]
    last_checkpoint: Optional[Path]
    best_checkpoint: Optional[Path]
    final_model: Optional[Path]


class Hooks:
    """Test/notebook hooks; ``after_step(epoch, step, trainer_state)`` runs after each optimizer step."""

    def after_step(self, epoch: int, step: int, state: dict) -> None:  # pragma: no cover - default no-op
        pass


# ---------------------------------------------------------------- small helpers

def learning_rate(cfg: TrainConfig, epoch: int) -> float:
    """The LR used during ``epoch`` (0-based): closed-form cosine annealing or multi-step decay."""
    if cfg.scheduler == "cosine":
        t_max = cfg.t_max or cfg.num_epochs
        return cfg.lr * (1 + math.cos(math.pi * min(epoch, t_max) / t_max)) / 2
    if cfg.scheduler == "multistep":
        return cfg.lr * cfg.gamma ** sum(epoch >= m for m in parse_milestones(cfg.milestones))
    raise HRankError(f"unknown --scheduler {cfg.scheduler!r}: use cosine or multistep")


def parse_milestones(text) -> List[int]:
    if isinstance(text, (list, tuple)):
        return [int(m) for m in text]
    try:
        return [int(m) for m in str(text).split(",") if m.strip()]
    except ValueError:
        raise HRankError(f"--milestones {text!r} is not a comma-separated list of epochs, e.g. 80,100") from None


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g)


def sample_seed(seed: int, epoch: int, position: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, position]).generate_state(1)[0])


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, rank: int = 0, world: int = 1) -> List[List[tuple]]:
    """This process's batches of ``(dataset index, augmentation seed)`` for ``epoch``.

    Global batches hold ``batch_size * world`` consecutive samples of the epoch order (padded by
    wrapping around to a multiple of ``world``, as DistributedSampler does); each is split into
    ``world`` equal contiguous shards.
    """
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
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def list_checkpoints(folder) -> Dict[int, Path]:
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


def load_base_net(path, net: str, num_classes: int, width: float, image_size: Optional[int]) -> SSD:
    """Initial weights from ``--base_net``.

    * a full detector (``base_net.*``, ``extras.*``, headers): loaded with :func:`load_model`, its
      own (possibly pruned) widths; if it predicts another number of classes, everything but the
      classification headers is copied into a fresh model (as pytorch-ssd's ``--pretrained_ssd``);
    * a bare backbone (``0.weight``, ``2.weight``... as pytorch-ssd's ``vgg16_reducedfc.pth``):
      loaded into ``model.base_net`` of a new model, strictly.
    """
    from hrank_ssd.nets.models import read_state_dict

    state = read_state_dict(path)
    if "base_net.0.weight" in state or "base_net.0.0.weight" in state:
        found = detect_net(state)
        if found != net:
            raise HRankError(f"--base_net {path} is a {found} checkpoint, not {net}: pass --net {found}")
        side = read_sidecar(path)
        size = image_size or side.get("image_size")
        classes = num_classes_of(state, net, path)
        if classes == num_classes:
            return model_from_state_dict(state, path, net=net, image_size=size)
        model = build_model(net, num_classes, plan=plan_from_state_dict(state, net), image_size=size)
        keep = {k: v for k, v in state.items() if not k.startswith("classification_headers.")}
        model.load_state_dict(keep, strict=False)
        warnings.warn(f"{path} predicts {classes} classes, the label file {num_classes}: "
                      "classification headers start from random weights", stacklevel=2)
        return model
    model = build_model(net, num_classes, width=width, image_size=image_size)
    try:
        model.base_net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).split("\n\t", 1)[-1].splitlines()[0][:160]
        raise HRankError(f"--base_net {path} is neither an SSD checkpoint nor a {net} backbone "
                         f"(width {width}): {first}") from None
    return model


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics span every process (differentiable all-reduce).

    Used for CPU/gloo DDP, where :class:`torch.nn.SyncBatchNorm` is unavailable; same parameters
    and buffers as BatchNorm2d, so state dicts are unchanged.
    """

    def forward(self, x):
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            from torch.distributed.nn.functional import all_reduce

            return self._global_forward(x, all_reduce)

    def _global_forward(self, x, all_reduce):
        c = x.size(1)
        count = x.new_tensor([x.numel() / c])
        sums = all_reduce(torch.cat([x.sum((0, 2, 3)), count]))
        total = sums[c]
        mean = sums[:c] / total
        d = x - mean.view(1, c, 1, 1)
        var = all_reduce((d * d).sum((0, 2, 3))) / total
        y = d * torch.rsqrt(var + self.eps).view(1, c, 1, 1)
        if self.affine:
            y = y * self.weight.view(1, c, 1, 1) + self.bias.view(1, c, 1, 1)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                unbiased = var.detach() * total.detach() / (total.detach() - 1).clamp(min=1)
                self.running_var.mul_(1 - m).add_(unbiased, alpha=m)
        return y


def _set_bn_eval(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


# ---------------------------------------------------------------- logs and curves

def write_logs(history: List[dict], folder) -> None:
    """``log.csv`` and ``log.json`` (a list of per-epoch dicts), written atomically."""
    import pandas as pd

    folder = Path(folder)
    frame = pd.DataFrame(history, columns=LOG_COLUMNS)
    atomic_write_text(folder / "log.csv", frame.to_csv(index=False))
    rows = [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()}
            for r in history]
    atomic_write_text(folder / "log.json", json.dumps(rows, indent=1))


def plot_curves(log_csv, out_png) -> Path:
    """Loss curves (train/val, regression/classification) and mAP per epoch from ``log.csv``."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import pandas as pd

    log = pd.read_csv(log_csv)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for col, style in (("train_loss", "-"), ("val_loss", "-"), ("train_regression_loss", ":"),
                       ("train_classification_loss", ":"), ("val_regression_loss", "--"),
                       ("val_classification_loss", "--")):
        if col in log and log[col].notna().any():
            ax1.plot(log["epoch"], log[col], style, marker="o", ms=3, label=col)
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("loss")
    ax1.legend(fontsize=7)
    ax1.grid(alpha=0.3)
    m = log[log["mAP"].notna()] if "mAP" in log else log.iloc[:0]
    if len(m):
        ax2.plot(m["epoch"], m["mAP"], marker="o")
    else:
        ax2.text(0.5, 0.5, "no mAP yet", ha="center", va="center", transform=ax2.transAxes)
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("mAP (VOC07 11-point)")
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    return atomic_savefig(fig, out_png, dpi=80)


def _param_dtype(model: nn.Module) -> torch.dtype:
    """The batch follows the model's floating dtype (float32 normally; float64 in the DDP equivalence test)."""
    return next(model.parameters()).dtype


@torch.no_grad()
def validation_loss(model: SSD, dataset, batch_size: int = 32, device="cpu", amp: bool = False,
                    num_workers: int = 0) -> Dict[str, float]:
    """MultiBox loss over a dataset yielding ``(image, locations, labels)`` (TestTransform + MatchPrior).

    Summed over every image, then divided by the total number of positives, so the value does not
    depend on the batch size or on how many processes computed it.
    """
    from hrank_ssd.data.voc import collate

    device = torch.device(device)
    model.eval()
    criterion = MultiBoxLoss()
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate,
                                         num_workers=num_workers)
    reg_sum = cls_sum = 0.0
    num_pos = 0
    for images, locations, labels in loader:
        images, labels = images.to(device, dtype=_param_dtype(model)), labels.to(device)
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            conf, loc = model(images)
        parts = criterion.parts(conf, loc, labels, locations.to(device), num_pos=1.0)
        reg_sum += float(parts.regression)
        cls_sum += float(parts.classification)
        num_pos += int((labels > 0).sum())
    n = max(num_pos, 1)
    return {"loss": (reg_sum + cls_sum) / n, "regression": reg_sum / n, "classification": cls_sum / n}


# ---------------------------------------------------------------- the trainer

def _init_distributed(device_name: Optional[str]):
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, False
    created = False
    if not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and not (device_name or "").startswith("cpu")
        dist.init_process_group("nccl" if use_cuda else "gloo")
        created = True
    return dist.get_rank(), dist.get_world_size(), created


def _resolve_device(name: Optional[str], world: int) -> torch.device:
    from hrank_ssd.devices import resolve_device

    device = resolve_device(name)
    if device.type == "cuda" and world > 1 and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    return device


def _coerce(config) -> TrainConfig:
    if isinstance(config, TrainConfig):
        return dataclasses.replace(config)
    if isinstance(config, argparse.Namespace):
        return TrainConfig.from_namespace(config)
    if isinstance(config, dict):
        return TrainConfig(**config)
    raise TypeError("train() takes a TrainConfig, an argparse.Namespace or a dict")


def _check(cfg: TrainConfig) -> None:
    if isinstance(cfg.datasets, (str, os.PathLike)):
        cfg.datasets = [cfg.datasets]
    if not cfg.datasets:
        raise HRankError("no training dataset: pass --datasets DIR [DIR ...]")
    if not cfg.validation_dataset:
        raise HRankError("no validation dataset: pass --validation_dataset DIR")
    for name in ("batch_size", "num_epochs"):
        if int(getattr(cfg, name)) < 1:
            raise HRankError(f"--{name} must be at least 1, got {getattr(cfg, name)}")
    if cfg.lr <= 0:
        raise HRankError(f"--lr must be positive, got {cfg.lr}")
    if cfg.scheduler not in ("cosine", "multistep"):
        raise HRankError(f"unknown --scheduler {cfg.scheduler!r}: use cosine or multistep")
    parse_milestones(cfg.milestones)
    if cfg.criterion not in ("hrank", "l1", "random"):
        raise HRankError(f"unknown --criterion {cfg.criterion!r}: use hrank, l1 or random")
    for flag, value, allowed in (("augment", cfg.augment, ("ssd", "light")), ("optimizer", cfg.optimizer, ("sgd", "adam")),
                                 ("init", cfg.init, ("default", "lsuv"))):
        if value not in allowed:
            raise HRankError(f"unknown --{flag} {value!r}: use {' or '.join(allowed)}")
    if cfg.grad_clip is not None and cfg.grad_clip <= 0:
        raise HRankError(f"--grad_clip must be positive, got {cfg.grad_clip}")


def _labels(cfg: TrainConfig) -> List[str]:
    from hrank_ssd.data.voc import VOC_CLASSES, find_label_file, read_labels

    if cfg.label_file:
        return list(read_labels(cfg.label_file))
    first = Path(cfg.datasets[0])
    if not first.is_dir():
        raise HRankError(f"dataset folder {first} not found: pass a VOCdevkit/VOC2007-style folder")
    found = find_label_file(first)
    return list(read_labels(found)) if found else ["BACKGROUND", *VOC_CLASSES]


def train(config: Union[TrainConfig, argparse.Namespace, dict], hooks: Optional[Hooks] = None) -> TrainResult:
    """Run (or resume) a training job described by ``config``; see :class:`TrainConfig`."""
    cfg = _coerce(config)
    _check(cfg)
    rank, world, created_group = _init_distributed(cfg.device)
    try:
        return _Trainer(cfg, rank, world, hooks or Hooks()).run()
    finally:
        if created_group and dist.is_initialized():
            dist.destroy_process_group()


class _Trainer:
    def __init__(self, cfg: TrainConfig, rank: int, world: int, hooks: Hooks):
        self.cfg, self.rank, self.world, self.hooks = cfg, rank, world, hooks
        self.main = rank == 0
        self.folder = Path(cfg.checkpoint_folder)
        self.device = _resolve_device(cfg.device, world)

    def log(self, msg: str) -> None:
        if self.main:
            print(msg, file=sys.stderr, flush=True)

    # -- setup -------------------------------------------------------------
    def setup(self) -> None:
        from hrank_ssd.data.voc import (
            LightAugmentation,
            TestTransform,
            TrainAugmentation,
            VOCDataset,
            make_dataset,
        )
        from hrank_ssd.nets.priors import MatchPrior

        cfg = self.cfg
        self.seed_note = None
        self.resume_path = resolve_resume(cfg.resume, self.folder)
        state = read_checkpoint(self.resume_path) if self.resume_path else None
        if cfg.resume == "auto" and state is None:
            self.log(f"--resume auto: no model_best.pth-N.tar in {self.folder}, starting fresh")
        if state is not None and cfg.seed is None:
            cfg.seed = int(state["args"].get("seed") or 0)
        if cfg.seed is None:
            cfg.seed = int.from_bytes(os.urandom(4), "little") % (2 ** 31)
            if self.world > 1:
                t = torch.tensor([cfg.seed])
                dist.broadcast(t, 0)
                cfg.seed = int(t)
            self.seed_note = f"seed {cfg.seed} (pass --seed {cfg.seed} to repeat this run)"
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        np.random.seed(cfg.seed % (2 ** 32))

        self.class_names = _labels(cfg)
        num_classes = len(self.class_names)
        self.kept, self.rates = None, None
        self.from_scratch = False
        if state is not None:
            size = state["args"].get("image_size") or read_sidecar(self.resume_path).get("image_size")
            cfg.image_size = cfg.image_size or size
            model = model_from_state_dict(state["model"], self.resume_path, net=cfg.net, num_classes=num_classes,
                                          image_size=cfg.image_size)
            self.kept, self.rates = state.get("kept_indices"), state.get("compress_rate")
        elif cfg.base_net:
            model = load_base_net(cfg.base_net, cfg.net, num_classes, cfg.width, cfg.image_size)
            if model.num_classes != num_classes:
                raise HRankError(f"--base_net {cfg.base_net} predicts {model.num_classes} classes but the label "
                                 f"file has {num_classes}")
        else:
            model = build_model(cfg.net, num_classes, width=cfg.width, image_size=cfg.image_size)
            self.from_scratch = True
        if cfg.compress_rate is not None and state is None:
            if not cfg.base_net:
                raise HRankError("--compress_rate prunes a trained model: pass it with --base_net MODEL.pth")
            from hrank_ssd.hrank.pruning import prune_model
            from hrank_ssd.nets.compress import parse_compress_rate

            model, self.kept = prune_model(model, cfg.compress_rate, cfg.criterion, cfg.rank_dir, cfg.seed,
                                           cfg.round_to)
            self.rates = parse_compress_rate(cfg.compress_rate, NUM_PRUNABLE[cfg.net])
            self.log(f"pruned with {cfg.criterion} at {cfg.compress_rate}: "
                     f"{sum(p.numel() for p in model.parameters())} parameters left")
        self.model = model.to(self.device)
        cfg.image_size = model.image_size

        self.teacher = None
        if cfg.distill_from:
            self.teacher = load_model(cfg.distill_from, net=cfg.net, num_classes=num_classes,
                                      image_size=model.image_size).to(self.device).eval()
            for p in self.teacher.parameters():
                p.requires_grad_(False)
            if self.teacher.priors.shape != model.priors.shape:
                raise HRankError(f"--distill_from {cfg.distill_from} has another input size/prior layout "
                                 "than the student: use the unpruned model the student came from")

        if cfg.freeze_base_net:
            for p in self.model.base_net.parameters():
                p.requires_grad_(False)

        ncfg = model.cfg
        target = MatchPrior(model.priors.cpu(), ncfg)
        augment = {"ssd": TrainAugmentation, "light": LightAugmentation}[cfg.augment]
        train_set = make_dataset(cfg.datasets, cfg.train_split,
                                 augment(model.image_size, ncfg.image_mean, ncfg.image_std), target,
                                 keep_difficult=cfg.keep_difficult, class_names=self.class_names)
        val_set = VOCDataset(cfg.validation_dataset, cfg.validation_split,
                             TestTransform(model.image_size, ncfg.image_mean, ncfg.image_std), target,
                             class_names=self.class_names, is_test=True)
        self.train_set, self.val_set = train_set, val_set
        if self.from_scratch and cfg.init == "lsuv":  # same images on every rank: every process starts identical
            plain = VOCDataset(cfg.datasets[0], cfg.train_split,
                               TestTransform(model.image_size, ncfg.image_mean, ncfg.image_std),
                               class_names=self.class_names)
            sample = torch.stack([plain[i][0] for i in range(min(16, len(plain)))])
            init_from_scratch(self.model, sample.to(self.device))
        self.eval_set = VOCDataset(cfg.validation_dataset, cfg.validation_split, class_names=self.class_names,
                                   is_test=True)

        self.amp = bool(cfg.amp) and self.device.type == "cuda"
        if cfg.amp and not self.amp:
            warnings.warn("--amp needs a CUDA device; training in float32 on CPU", stacklevel=2)
        if self.world > 1:
            if self.device.type == "cuda":
                self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
            else:
                for m in self.model.modules():
                    if type(m) is nn.BatchNorm2d:
                        m.__class__ = GlobalBatchNorm2d
            self.net = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        else:
            self.net = self.model
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.params = params
        if cfg.optimizer == "adam":
            self.optimizer = torch.optim.Adam(params, lr=cfg.lr)
        else:
            self.optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                                             weight_decay=cfg.weight_decay)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.criterion = MultiBoxLoss(3.0, cfg.distill_T)

        self.start_epoch, self.start_step = 0, 0
        self.sums = _zero_sums()
        self.best_val, self.best_epoch = math.inf, None
        self.history: List[dict] = []
        self.last_path: Optional[Path] = None
        if state is not None:
            try:
                self.optimizer.load_state_dict(state["optimizer"])
            except (ValueError, KeyError) as e:
                raise HRankError(f"{self.resume_path}: its optimizer state does not fit this run ({e}); resume "
                                 f"with the --optimizer and --freeze_base_net it was trained with") from None
            if self.amp and state.get("scaler"):
                self.scaler.load_state_dict(state["scaler"])
            self.best_val = float(state.get("best_val_loss", math.inf))
            self.best_epoch = state.get("best_epoch")
            self.history = list(state.get("history", []))
            if state.get("step") is None:
                self.start_epoch = int(state["epoch"]) + 1
            else:
                self.start_epoch, self.start_step = int(state["epoch"]), int(state["step"])
                self.sums = {k: float(v) for k, v in state["sums"].items()}
            set_rng_state(state["rng"])
            self.last_path = self.resume_path
            where = f"epoch {self.start_epoch}" + (f" step {self.start_step}" if self.start_step else "")
            self.log(f"resumed from {self.resume_path}: continuing at {where}")
        if self.seed_note:
            self.log(self.seed_note)

    # -- checkpoints -------------------------------------------------------
    def checkpoint_state(self, epoch: int, step: Optional[int]) -> dict:
        return {
            "model": clean_state_dict(self.model),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": {"name": self.cfg.scheduler, "epoch": epoch, "lr": learning_rate(self.cfg, epoch)},
            "scaler": self.scaler.state_dict(),
            "epoch": epoch,
            "step": step,  # None: the epoch is complete
            "sums": dict(self.sums),
            "best_val_loss": self.best_val,
            "best_epoch": self.best_epoch,
            "compress_rate": self.rates,
            "kept_indices": self.kept,
            "rng": rng_state(),
            "history": self.history,
            "args": asdict(self.cfg),
            "net": self.cfg.net,
            "num_classes": self.model.num_classes,
            "image_size": self.model.image_size,
        }

    def save_checkpoint(self, epoch: int, step: Optional[int]) -> Path:
        path = self.folder / f"model_best.pth-{epoch}.tar"
        bad = [n for n, t in self.model.state_dict().items() if t.is_floating_point() and not torch.isfinite(t).all()]
        if bad:
            raise self.nan_error(f"non-finite weights ({bad[0]})", epoch, step if step is not None else "end")
        if self.main:
            atomic_save(self.checkpoint_state(epoch, step), path)
            meta = {"net": self.cfg.net, "num_classes": self.model.num_classes, "image_size": self.model.image_size,
                    "compress_rate": self.rates, "criterion": self.cfg.criterion if self.kept else None,
                    "kept_indices": self.kept, "epoch": epoch, "step": step}
            atomic_write_text(sidecar_path(path), json.dumps(meta))
            keep = {epoch, self.best_epoch}
            for e, old in list_checkpoints(self.folder).items():
                if e not in keep:
                    old.unlink(missing_ok=True)
                    sidecar_path(old).unlink(missing_ok=True)
        self.last_path = path
        return path

    # -- loops -------------------------------------------------------------
    def compute_loss(self, images, locations, labels):
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            conf, loc = self.net(images)
            teacher_conf = None
            if self.teacher is not None:
                with torch.no_grad():
                    teacher_conf, _ = self.teacher(images)
        num_pos = (labels > 0).sum()
        if self.world > 1:
            num_pos = num_pos.float()
            dist.all_reduce(num_pos)
            num_pos = num_pos / self.world
        parts = self.criterion.parts(conf, loc, labels, locations, teacher_conf, num_pos=num_pos)
        loss = parts.regression + parts.classification + self.cfg.distill_alpha * parts.distillation
        return loss, parts

    def nan_error(self, value: float, epoch: int, step: int) -> HRankError:
        last = self.last_path or "none written yet"
        return HRankError(f"loss became {value} at epoch {epoch} step {step}: stopped without saving it; last good "
                          f"checkpoint: {last}; lower --lr, set --grad_clip or drop --amp")

    def train_epoch(self, epoch: int) -> None:
        from tqdm.auto import tqdm

        from hrank_ssd.data.voc import collate

        cfg = self.cfg
        lr = learning_rate(cfg, epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.net.train()
        if cfg.bn_eval:
            _set_bn_eval(self.net)
        batches = epoch_batches(len(self.train_set), cfg.batch_size, cfg.seed, epoch, self.rank, self.world)
        steps = len(batches)
        loader = torch.utils.data.DataLoader(SeededSamples(self.train_set), batch_sampler=batches[self.start_step:],
                                             collate_fn=collate, num_workers=cfg.num_workers,
                                             pin_memory=self.device.type == "cuda")
        bar = tqdm(loader, total=steps, initial=self.start_step, desc=f"epoch {epoch}", leave=False,
                   disable=not (cfg.progress and self.main), dynamic_ncols=True)
        step = self.start_step
        for images, locations, labels in bar:
            images = images.to(self.device, dtype=_param_dtype(self.model), non_blocking=True)
            locations = locations.to(self.device, non_blocking=True)
            labels = labels.to(self.device, non_blocking=True)
            loss, parts = self.compute_loss(images, locations, labels)
            stats = torch.stack([loss.detach(), parts.regression.detach(), parts.classification.detach(),
                                 parts.distillation.detach()]).float()
            if self.world > 1:
                dist.all_reduce(stats)
                stats /= self.world
            if not torch.isfinite(stats[0]):
                raise self.nan_error(float(stats[0]), epoch, step)
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
            norm = torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip or math.inf)
            if not self.amp and not torch.isfinite(norm):
                raise self.nan_error(float(norm), epoch, step)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            for k, v in zip(("loss", "regression", "classification", "distillation"), stats.tolist()):
                self.sums[k] += v
            self.sums["steps"] += 1
            step += 1
            bar.set_postfix(loss=f"{self.sums['loss'] / self.sums['steps']:.4f}", lr=f"{lr:.2g}")
            if cfg.checkpoint_every_steps and step % cfg.checkpoint_every_steps == 0 and step < steps:
                self.save_checkpoint(epoch, step)
            loss_v, reg_v, cls_v, _ = stats.tolist()
            self.hooks.after_step(epoch, step, {"trainer": self, "loss": loss_v, "regression": reg_v,
                                                "classification": cls_v, "steps": steps})
        bar.close()
        self.start_step = 0

    def validate(self) -> Dict[str, float]:
        return validation_loss(self.model, self.val_set, self.cfg.batch_size, self.device, self.amp,
                               self.cfg.num_workers)

    def mean_ap(self, epoch: int) -> float:
        from hrank_ssd.measure.evaluation import evaluate_model, mean_ap

        table, _ = evaluate_model(self.model, self.eval_set, self.folder / "eval", device=self.device,
                                  class_names=self.class_names, progress=False)
        return float(mean_ap(table))

    def run(self) -> TrainResult:
        cfg = self.cfg
        self.setup()
        if self.main:
            self.folder.mkdir(parents=True, exist_ok=True)
        last_val = math.nan
        for epoch in range(self.start_epoch, cfg.num_epochs):
            t0 = time.time()
            self.train_epoch(epoch)
            row = {"epoch": epoch}
            steps = max(self.sums["steps"], 1)
            row.update(train_loss=self.sums["loss"] / steps, train_regression_loss=self.sums["regression"] / steps,
                       train_classification_loss=self.sums["classification"] / steps,
                       train_distillation_loss=self.sums["distillation"] / steps)
            self.sums = _zero_sums()
            if self.main:
                val = self.validate()
                last_val = val["loss"]
                row.update(val_loss=val["loss"], val_regression_loss=val["regression"],
                           val_classification_loss=val["classification"])
                due = cfg.validation_epochs > 0 and ((epoch + 1) % cfg.validation_epochs == 0
                                                     or epoch == cfg.num_epochs - 1)
                row["mAP"] = self.mean_ap(epoch) if due else math.nan
                if not math.isfinite(last_val):
                    raise self.nan_error(last_val, epoch, "validation")
                if last_val < self.best_val:
                    self.best_val, self.best_epoch = last_val, epoch
            row.update(lr=learning_rate(cfg, epoch), time_s=time.time() - t0)
            self.history.append(row)
            self.save_checkpoint(epoch, None)
            if self.main:
                write_logs(self.history, self.folder)
                plot_curves(self.folder / "log.csv", self.folder / "curves.png")
                map_text = f" mAP {row['mAP']:.4f}" if math.isfinite(row.get("mAP", math.nan)) else ""
                self.log(f"epoch {epoch}: train loss {row['train_loss']:.4f} (reg {row['train_regression_loss']:.4f}, "
                         f"cls {row['train_classification_loss']:.4f}), val loss {last_val:.4f}{map_text}, "
                         f"lr {row['lr']:.3g}")
        final = None
        if self.main:
            if not self.history:
                self.log("nothing to do: the checkpoint already covers --num_epochs")
            else:
                last = self.history[-1]
                loss = last.get("val_loss", last_val)
                final = self.folder / f"{cfg.net}-Epoch-{last['epoch']}-Loss-{loss:.4f}.pth"
                extra = {}
                if self.rates is not None:
                    extra = {"compress_rate": list(self.rates), "criterion": cfg.criterion,
                             "kept_indices": self.kept}
                save_model(self.model, final, **extra)
                self.log(f"saved {final}")
        best = (self.folder / f"model_best.pth-{self.best_epoch}.tar") if self.best_epoch is not None else None
        return TrainResult(self.model, self.history, self.last_path, best, final)


def _zero_sums() -> Dict[str, float]:
    return {"loss": 0.0, "regression": 0.0, "classification": 0.0, "distillation": 0.0, "steps": 0}


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """The ``train`` command's flags (names as pytorch-ssd's train_ssd.py where they exist)."""
    from hrank_ssd.cli.args import add_net

    d = TrainConfig()
    p.add_argument("--datasets", nargs="+", required=True, help="VOCdevkit/VOC20xx training folders")
    p.add_argument("--validation_dataset", required=True, help="VOC folder for validation loss and mAP")
    p.add_argument("--label_file", default=None, help="class names, BACKGROUND first (default: the dataset's)")
    add_net(p)
    p.add_argument("--base_net", default=None, help="initial weights: a full SSD checkpoint or a bare backbone")
    p.add_argument("--freeze_base_net", action="store_true", help="train only add-ons, extras and headers")
    p.add_argument("--batch_size", type=int, default=d.batch_size, help="per-process batch size")
    p.add_argument("--num_epochs", type=int, default=d.num_epochs)
    p.add_argument("--lr", "--learning-rate", dest="lr", type=float, default=d.lr)
    p.add_argument("--momentum", type=float, default=d.momentum)
    p.add_argument("--weight_decay", type=float, default=d.weight_decay)
    p.add_argument("--gamma", type=float, default=d.gamma, help="multistep decay factor")
    p.add_argument("--scheduler", choices=("cosine", "multistep"), default=d.scheduler)
    p.add_argument("--milestones", default=d.milestones, help="multistep epochs, e.g. 80,100")
    p.add_argument("--t_max", type=float, default=None, help="cosine period in epochs (default --num_epochs)")
    p.add_argument("--checkpoint_folder", default=d.checkpoint_folder)
    p.add_argument("--optimizer", choices=("sgd", "adam"), default=d.optimizer,
                   help="sgd as the original; adam trains small from-scratch models faster")
    p.add_argument("--augment", choices=("ssd", "light"), default=d.augment,
                   help="ssd: photometric, expand, IoU crop, flip; light: photometric and flip only")
    p.add_argument("--init", choices=("default", "lsuv"), default=d.init,
                   help="weights of a model trained from scratch: PyTorch's default, or LSUV with unit activations "
                        "(trains small course models much faster, best with --optimizer adam)")
    p.add_argument("--num_workers", type=int, default=d.num_workers)
    p.add_argument("--width", type=float, default=d.width, help="channel multiplier for a model built from scratch")
    p.add_argument("--image_size", type=int, default=None)
    p.add_argument("--train_split", default=None, help="ImageSets/Main split (default trainval)")
    p.add_argument("--validation_split", default=None, help="ImageSets/Main split (default test)")
    p.add_argument("--keep_difficult", action="store_true")
    p.add_argument("--seed", type=int, default=None, help="makes the run repeatable (stored for --resume)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--validation_epochs", type=int, default=d.validation_epochs, help="mAP every N epochs; 0: never")
    p.add_argument("--checkpoint_every_steps", type=int, default=0, help="also checkpoint every N steps mid-epoch")
    p.add_argument("--resume", default=None, help="model_best.pth-N.tar to continue from, or auto (newest)")
    p.add_argument("--rank_dir", default=None, help="rank files for --criterion hrank")
    p.add_argument("--compress_rate", default=None, help='prune --base_net first, e.g. "[0.1]*7+[0.5]*9"')
    p.add_argument("--criterion", choices=("hrank", "l1", "random"), default=d.criterion)
    p.add_argument("--round_to", type=int, default=None, help="round kept filter counts to a multiple of N")
    p.add_argument("--amp", action="store_true", help="mixed precision (CUDA only)")
    p.add_argument("--grad_clip", type=float, default=None, help="clip the gradient norm to MAX_NORM")
    p.add_argument("--bn_eval", action="store_true", help="freeze BatchNorm statistics (eval mode) while training")
    p.add_argument("--distill_from", default=None, help="teacher checkpoint (the unpruned model)")
    p.add_argument("--distill_alpha", type=float, default=d.distill_alpha)
    p.add_argument("--distill_T", type=float, default=d.distill_T)
    p.add_argument("--no_progress", dest="progress", action="store_false", help="no tqdm bars")


__all__ = ["Hooks", "LOG_COLUMNS", "TrainConfig", "TrainResult", "add_train_arguments", "epoch_batches",
           "learning_rate", "list_checkpoints", "load_base_net", "plot_curves", "read_checkpoint", "resolve_resume",
           "train", "validation_loss", "write_logs", "GlobalBatchNorm2d"]
