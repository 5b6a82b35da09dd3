"""A training run's state, set up from its config and checkpoint, and the checkpoints it writes."""

from __future__ import annotations

import math
import os
import random
import sys
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch

from hrank_ssd.data import voc
from hrank_ssd.errors import HRankError
from hrank_ssd.hrank.pruning import prune_model
from hrank_ssd.nets import models
from hrank_ssd.nets.compress import format_compress_rate, layer_rates
from hrank_ssd.nets.models import clean_state_dict, count_parameters
from hrank_ssd.nets.registry import num_prunable
from hrank_ssd.train import checkpoints, config, distributed
from hrank_ssd.train.config import TrainConfig, learning_rate
from hrank_ssd.train.losses import MultiBoxLoss

SUM_KEYS = ("loss", "regression", "classification", "distillation")  # running sums of the epoch's step losses


def zero_sums() -> Dict[str, float]:
    return {**dict.fromkeys(SUM_KEYS, 0.0), "steps": 0}


class TrainerSetup:
    """One process's share of a run, set up from the config (and a checkpoint); ``hooks``: a ``Hooks``."""

    def __init__(self, cfg: TrainConfig, rank: int, world: int, hooks):
        self.cfg, self.rank, self.world, self.hooks = cfg, rank, world, hooks
        self.main = rank == 0  # only process 0 validates and writes files
        self.folder = Path(cfg.checkpoint_folder)
        self.device = distributed.process_device(cfg.device, world)

    def log(self, msg: str) -> None:
        if self.main:
            print(msg, file=sys.stderr, flush=True)

    def setup(self) -> None:
        """The run's state, in this order: the RNG streams a resumed run replays depend on it."""
        cfg = self.cfg
        self.resume_path = checkpoints.resolve_resume(cfg.resume, self.folder)
        state = checkpoints.read_checkpoint(self.resume_path) if self.resume_path else None
        if cfg.resume == "auto" and state is None:
            self.log(f"--resume auto: no model_best.pth-N.tar in {self.folder}, starting fresh")
        seed_note = self._seed(state)
        self.class_names = config.class_names(cfg)
        self._setup_model(state)
        self.train_set, self.val_set, self.eval_set = config.make_datasets(cfg, self.model, self.class_names)
        if self.from_scratch and cfg.init == "lsuv":  # calibrated on the first training images, every process alike
            ncfg = self.model.cfg
            transform = voc.TestTransform(self.model.image_size, ncfg.image_mean, ncfg.image_std)
            plain = voc.VOCDataset(cfg.datasets[0], cfg.train_split, transform, class_names=self.class_names)
            sample = torch.stack([plain[i][0] for i in range(min(config.LSUV_IMAGES, len(plain)))])
            models.init_from_scratch(self.model, sample.to(self.device))
        # channels-last if asked (after initialisation); files and the returned model stay NCHW
        self.layout = torch.channels_last if cfg.channels_last else torch.contiguous_format
        for net in (self.model, self.teacher):
            if net is not None:
                net.to(memory_format=self.layout)
        self._setup_optimizer()
        self._restore(state)
        if seed_note:
            self.log(seed_note)

    def _seed(self, state: Optional[dict]) -> Optional[str]:
        """Seed every RNG with ``--seed``, the checkpoint's or a new one (and return a note that prints it)."""
        cfg, note = self.cfg, None
        if state is not None and cfg.seed is None:
            cfg.seed = int(state["args"].get("seed") or 0)
        if cfg.seed is None:
            cfg.seed = distributed.broadcast_int(int.from_bytes(os.urandom(4), "little") % (2 ** 31), self.world)
            note = f"seed {cfg.seed} (pass --seed {cfg.seed} to repeat this run)"
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        np.random.seed(cfg.seed % (2 ** 32))
        return note

    def _setup_model(self, state: Optional[dict]) -> None:
        cfg = self.cfg
        num_classes = len(self.class_names)
        self.kept, self.rates, self.from_scratch = None, None, False
        if state is not None:  # its image size becomes cfg.image_size unless one was given
            size = state["args"].get("image_size") or models.read_sidecar(self.resume_path).get("image_size")
            cfg.image_size = cfg.image_size or size
            model = models.load_model(self.resume_path, net=cfg.net, num_classes=num_classes,
                                      image_size=cfg.image_size, state=state["model"])
            self.kept, self.rates = state.get("kept_indices"), state.get("compress_rate")
        elif not cfg.base_net:
            model = models.build_model(cfg.net, num_classes, width=cfg.width, image_size=cfg.image_size)
            self.from_scratch = True
        else:
            model = config.load_base_net(cfg.base_net, cfg.net, num_classes, cfg.width, cfg.image_size)
        if state is None and cfg.compress_rate is not None:
            if not cfg.base_net:
                raise HRankError("--compress_rate prunes a trained model: pass it with --base_net MODEL.pth")
            self.rates = layer_rates(cfg.compress_rate, num_prunable(cfg.net))
            model, self.kept = prune_model(model, self.rates, cfg.criterion, cfg.rank_dir, cfg.seed, cfg.round_to)
            self.log(f"pruned with {cfg.criterion} at {format_compress_rate(self.rates)}: "
                     f"{count_parameters(model)} parameters left")
        self.model = model.to(self.device)
        cfg.image_size = model.image_size
        self.teacher = config.load_teacher(cfg, num_classes, model, self.device) if cfg.distill_from else None
        if cfg.freeze_base_net:
            self.model.base_net.requires_grad_(False)

    def _setup_optimizer(self) -> None:
        cfg = self.cfg
        self.amp = bool(cfg.amp) and self.device.type == "cuda"
        if cfg.amp and not self.amp:
            warnings.warn("--amp needs a CUDA device; training in float32 on CPU", stacklevel=2)
        self.net = self.model
        if self.world > 1:
            self.model, self.net = distributed.wrap_for_ddp(self.model, self.device)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = (torch.optim.Adam(self.params, lr=cfg.lr) if cfg.optimizer == "adam" else
                          torch.optim.SGD(self.params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay))
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.criterion = MultiBoxLoss(3.0, cfg.distill_T)

    def _restore(self, state: Optional[dict]) -> None:
        self.start_epoch, self.start_step, self.sums = 0, 0, zero_sums()
        self.best_val, self.best_epoch = math.inf, None
        self.history: List[dict] = []
        self.last_path: Optional[Path] = None
        if state is None:
            return
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
        checkpoints.set_rng_state(state["rng"])
        self.last_path = self.resume_path
        where = f"epoch {self.start_epoch}" + (f" step {self.start_step}" if self.start_step else "")
        self.log(f"resumed from {self.resume_path}: continuing at {where}")

    def checkpoint_state(self, epoch: int, step: Optional[int]) -> dict:
        """Everything a resumed run needs (docs/training.md lists the keys); ``step`` None: epoch complete."""
        return {"model": clean_state_dict(self.model), "optimizer": self.optimizer.state_dict(),
                "scheduler": {"name": self.cfg.scheduler, "epoch": epoch, "lr": learning_rate(self.cfg, epoch)},
                "scaler": self.scaler.state_dict(), "epoch": epoch, "step": step, "sums": dict(self.sums),
                "best_val_loss": self.best_val, "best_epoch": self.best_epoch, "compress_rate": self.rates,
                "kept_indices": self.kept, "rng": checkpoints.rng_state(), "history": self.history,
                "args": asdict(self.cfg), "net": self.cfg.net, "num_classes": self.model.num_classes,
                "image_size": self.model.image_size}

    def save_checkpoint(self, epoch: int, step: Optional[int]) -> Path:
        """Checkpoint (process 0 writes; every process remembers the path); refuses non-finite weights."""
        bad = [n for n, t in self.model.state_dict().items() if t.is_floating_point() and not torch.isfinite(t).all()]
        if bad:
            raise self.nan_error(f"non-finite weights ({bad[0]})", epoch, step if step is not None else "end")
        path = checkpoints.checkpoint_path(self.folder, epoch)
        if self.main:
            state = self.checkpoint_state(epoch, step)
            meta = {k: state[k] for k in ("net", "num_classes", "image_size", "compress_rate")}
            meta.update(criterion=self.cfg.criterion if self.kept else None, kept_indices=self.kept, epoch=epoch,
                        step=step)
            checkpoints.write_checkpoint(self.folder, epoch, state, meta, keep={self.best_epoch})
        self.last_path = path
        return path

    def nan_error(self, value, epoch: int, step) -> HRankError:
        """The one-line error for a non-finite loss, gradient or weight, naming the last good checkpoint."""
        last = self.last_path or "none written yet"
        return HRankError(f"loss became {value} at epoch {epoch} step {step}: stopped without saving it; last good "
                          f"checkpoint: {last}; lower --lr, set --grad_clip or drop --amp")
