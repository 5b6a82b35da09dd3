"""The training loop: :func:`train` runs or resumes a :class:`TrainConfig`, under torchrun too (docs/training.md)."""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path
from typing import List, NamedTuple, Optional

import torch
from torch import nn

from hrank_ssd.data.voc import collate
from hrank_ssd.measure.evaluation import mean_ap
from hrank_ssd.nets.models import save_model
from hrank_ssd.nets.ssd import SSD
from hrank_ssd.progress import tqdm
from hrank_ssd.train import distributed
from hrank_ssd.train.checkpoints import SeededSamples, checkpoint_path, epoch_batches
from hrank_ssd.train.config import TrainConfig, as_config, learning_rate
from hrank_ssd.train.logs import Hooks, epoch_summary, plot_curves, write_logs
from hrank_ssd.train.losses import validation_loss, validation_loss_and_map
from hrank_ssd.train.setup import SUM_KEYS, TrainerSetup, zero_sums


class TrainResult(NamedTuple):
    """What :func:`train` returns: the trained model, the per-epoch log rows and the files it wrote."""

    model: SSD
    history: List[dict]
    last_checkpoint: Optional[Path]
    best_checkpoint: Optional[Path]
    final_model: Optional[Path]


def train(config: TrainConfig, hooks: Optional[Hooks] = None) -> TrainResult:
    """Run (or resume) the training job ``config`` describes."""
    cfg = as_config(config)
    with distributed.process_group(cfg.device) as (rank, world):
        return _Trainer(cfg, rank, world, hooks or Hooks()).run()


class _Trainer(TrainerSetup):
    """One process's run: :class:`TrainerSetup`'s state, then train, validate, save."""

    def train_step(self, batch, epoch: int, step: int) -> List[float]:
        """One optimizer step; returns the loss and its parts, averaged over the processes (and summed up)."""
        images, locations, labels = batch
        dtype = next(self.model.parameters()).dtype  # float64 in the DDP equivalence test
        images = images.to(self.device, dtype=dtype, non_blocking=True, memory_format=self.layout)
        locations, labels = (t.to(self.device, non_blocking=True) for t in (locations, labels))
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            conf, loc = self.net(images)
            with torch.no_grad():
                teacher_conf = None if self.teacher is None else self.teacher(images)[0]
        num_pos = (labels > 0).sum()
        if self.world > 1:  # the global positives / world: DDP's gradient average is then the whole batch's
            num_pos = distributed.mean_over_processes(num_pos.float(), self.world)
        parts = self.criterion(conf, loc, labels, locations, teacher_conf, num_pos=num_pos)
        loss = parts.regression + parts.classification + self.cfg.distill_alpha * parts.distillation
        stats = torch.stack([loss, *parts]).detach().float()
        distributed.mean_over_processes(stats, self.world)
        if not torch.isfinite(stats[0]):
            raise self.nan_error(float(stats[0]), epoch, step)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        norm = torch.nn.utils.clip_grad_norm_(self.params, self.cfg.grad_clip or math.inf)
        if not self.amp and not torch.isfinite(norm):
            raise self.nan_error(float(norm), epoch, step)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        values = stats.tolist()
        for k, v in zip(SUM_KEYS, values):
            self.sums[k] += v
        self.sums["steps"] += 1
        return values

    def train_epoch(self, epoch: int) -> None:
        """The optimizer steps of ``epoch`` (from ``start_step`` when resuming mid-epoch) at its learning rate."""
        cfg = self.cfg
        lr = learning_rate(cfg, epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.net.train()
        if cfg.bn_eval:  # BatchNorm statistics stay frozen
            for m in self.net.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        batches = epoch_batches(len(self.train_set), cfg.batch_size, cfg.seed, epoch, self.rank, self.world)
        steps = len(batches)
        loader = torch.utils.data.DataLoader(SeededSamples(self.train_set), batch_sampler=batches[self.start_step:],
                                             collate_fn=collate, num_workers=cfg.num_workers,
                                             pin_memory=self.device.type == "cuda")
        bar = tqdm(loader, total=steps, initial=self.start_step, desc=f"epoch {epoch + 1}/{cfg.num_epochs}",
                   leave=False, disable=not (cfg.progress and self.main), dynamic_ncols=True)
        step = self.start_step
        for batch in bar:
            loss, regression, classification, _ = self.train_step(batch, epoch, step)
            step += 1
            bar.set_postfix(loss=f"{self.sums['loss'] / self.sums['steps']:.4f}", lr=f"{lr:.2g}")
            if cfg.checkpoint_every_steps and step % cfg.checkpoint_every_steps == 0 and step < steps:
                self.save_checkpoint(epoch, step)
            self.hooks.after_step(epoch, step, {"trainer": self, "loss": loss, "regression": regression,
                                                "classification": classification, "steps": steps})
        bar.close()
        self.start_step = 0

    def validate_epoch(self, epoch: int) -> dict:
        """The epoch's validation columns (loss parts; mAP when due, from the same forwards); tracks the best."""
        cfg = self.cfg
        due = cfg.validation_epochs > 0 and ((epoch + 1) % cfg.validation_epochs == 0 or epoch == cfg.num_epochs - 1)
        model = self.model
        if self.layout != torch.contiguous_format:  # an NCHW copy: evaluation's layout, so its very detections
            model = copy.deepcopy(model).to(memory_format=torch.contiguous_format)
        if due:
            val, table = validation_loss_and_map(model, self.val_set, self.eval_set, self.folder / "eval",
                                                 self.device, self.class_names)
        else:
            val = validation_loss(model, self.val_set, cfg.batch_size, self.device, self.amp, cfg.num_workers)
        row = {"val_loss": val["loss"], **{f"val_{k}_loss": val[k] for k in ("regression", "classification")},
               "mAP": float(mean_ap(table)) if due else math.nan}
        if not math.isfinite(val["loss"]):
            raise self.nan_error(val["loss"], epoch, "validation")
        if val["loss"] < self.best_val:
            self.best_val, self.best_epoch = val["loss"], epoch
        return row

    def run_epoch(self, epoch: int) -> None:
        """Train, validate (process 0), checkpoint and log one epoch."""
        t0 = time.time()
        self.train_epoch(epoch)
        steps = max(self.sums["steps"], 1)
        row = {"epoch": epoch, "train_loss": self.sums["loss"] / steps,
               **{f"train_{k}_loss": self.sums[k] / steps for k in SUM_KEYS[1:]}}
        self.sums = zero_sums()
        if self.main:
            row.update(self.validate_epoch(epoch))
        row.update(lr=learning_rate(self.cfg, epoch), time_s=time.time() - t0)
        self.history.append(row)
        self.save_checkpoint(epoch, None)
        if self.main:
            write_logs(self.history, self.folder)
            plot_curves(self.folder / "log.csv", self.folder / "curves.png")
            self.log(epoch_summary(row))

    def save_final(self) -> Optional[Path]:
        """``{net}-Epoch-{epoch}-Loss-{val_loss}.pth`` (+ sidecar with the pruning it carries), from process 0."""
        if not self.history:
            self.log("nothing to do: the checkpoint already covers --num_epochs")
            return None
        last = self.history[-1]
        final = self.folder / f"{self.cfg.net}-Epoch-{last['epoch']}-Loss-{last['val_loss']:.4f}.pth"
        pruning = {} if self.rates is None else {"compress_rate": list(self.rates), "criterion": self.cfg.criterion,
                                                 "kept_indices": self.kept}
        save_model(self.model, final, **pruning)
        self.log(f"saved {final}")
        return final

    def run(self) -> TrainResult:
        """Set up, run the remaining epochs, save the final model."""
        self.setup()
        if self.main:
            self.folder.mkdir(parents=True, exist_ok=True)
        for epoch in range(self.start_epoch, self.cfg.num_epochs):
            self.run_epoch(epoch)
        self.model.to(memory_format=torch.contiguous_format)
        final = self.save_final() if self.main else None
        best = checkpoint_path(self.folder, self.best_epoch) if self.best_epoch is not None else None
        return TrainResult(self.model, self.history, self.last_path, best, final)
