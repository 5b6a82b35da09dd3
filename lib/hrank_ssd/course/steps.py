"""``Course(profile, run_dir, work_dir)``: the workspace (data, baselines, ranks) and the notebooks' verbs."""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Optional

import pandas as pd

from hrank_ssd.course import latency_models, making, measures, student
from hrank_ssd.course import results as results_files
from hrank_ssd.course.profiles import Profile, get_profile
from hrank_ssd.course.results import LATEST_LINK
from hrank_ssd.data.synthetic import make_synthetic_voc
from hrank_ssd.data.voc import VOC_CLASSES, TestTransform, VOCDataset, read_labels
from hrank_ssd.devices import resolve_device
from hrank_ssd.errors import HRankError
from hrank_ssd.hrank.ranks import compute_ranks, has_ranks, image_batches, save_ranks
from hrank_ssd.io import downloads, voc_download
from hrank_ssd.io.files import atomic_write_text
from hrank_ssd.io.manifest import load_manifest
from hrank_ssd.nets.models import fit_problem, load_model, save_model
from hrank_ssd.train.config import TrainConfig
from hrank_ssd.train.trainer import train as run_training


class Course:
    """One course run and its verbs (:data:`VERBS`); ``data_dir`` (default ``work_dir``) holds ``<profile>/data``."""

    def __init__(self, profile="offline", run_dir=f"runs/{LATEST_LINK}", work_dir="work", device=None,
                 progress=True, data_dir=None):
        self.profile = profile if isinstance(profile, Profile) else get_profile(profile)
        self.work = Path(work_dir) / self.profile.name
        self.data = Path(data_dir or work_dir) / self.profile.name / "data"
        self.run_dir, self.results = Path(run_dir), Path(run_dir) / "results"
        self.results.mkdir(parents=True, exist_ok=True)
        self.device, self.progress = str(resolve_device(device)), progress
        self._fetched: Dict[str, Path] = {}
        self._unavailable: Dict[str, HRankError] = {}  # published artifacts that failed in this kernel
        self._voc_sets: set = set()  # VOC sets checked (and downloaded if missing) in this kernel
        self.substitutes: Dict[str, str] = {}  # model key -> why another model stands in for it
        self.table, self.table_file = None, None  # the latency table and its file, once read (latency_models)
        self.baseline_quick_map = None  # the unpruned model's quick mAP (making.try_compress_rate)

    def path(self, key: str) -> Path:
        """Where the course keeps the model ``key`` (``work/<profile>/models/<key>.pth``)."""
        return self.work / "models" / f"{key}.pth"

    def result(self, name: str) -> Path:
        """``run_dir/results/<name>``."""
        return results_files.results_file(self.results, name)

    def save_json(self, name: str, obj) -> Path:
        """Write the results file ``name`` (JSON)."""
        return results_files.write_json(self.results, name, obj)

    def save_csv(self, name: str, table: pd.DataFrame) -> pd.DataFrame:
        """Write the results file ``name`` (no index); returns ``table``."""
        table.to_csv(self.result(name), index=False)
        return table

    def load_json(self, name: str):
        """The results file ``name``, parsed (None when absent)."""
        return results_files.read_result(self.results, name)

    def downloaded(self, name: str) -> bool:
        """Whether the published artifact ``name`` is in the work folder already."""
        return (self.work.parent / load_manifest().get(name)["file"]).exists()

    def fetch(self, name: str) -> Path:
        """A published artifact, downloaded and verified once per kernel (a failure: until its file appears)."""
        if name not in self._fetched:
            if name in self._unavailable and not self.downloaded(name):
                raise self._unavailable[name]
            try:
                self._fetched[name] = downloads.fetch(name, dest_dir=self.work.parent, progress=self.progress,
                                                      check=fit_problem)
            except HRankError as e:
                self._unavailable[name] = e
                raise
        return self._fetched[name]

    def substitute(self, key: str, why: str) -> None:
        """Say once (stderr) and record in ``results/substitutes.json`` what stands in for the published ``key``."""
        if key not in self.substitutes:
            self.substitutes[key] = why
            print(why, file=sys.stderr)
            self.save_json("substitutes.json", {**(self.load_json("substitutes.json") or {}), key: why})

    def published_used(self, key: str) -> None:
        """The published ``key`` was had after all: drop an earlier kernel's substitute record of it."""
        known = self.load_json("substitutes.json") or {}
        if key in known:
            self.save_json("substitutes.json", {k: v for k, v in known.items() if k != key})

    @contextmanager
    def timed(self, step: str):
        start = time.perf_counter()
        yield
        results_files.add_timing(self.results, step, time.perf_counter() - start)

    def dataset_root(self) -> Path:
        """The training (and, offline, test) VOC root: made here or downloaded."""
        p = self.profile
        if p.synthetic:
            root = self.data / "VOCdevkit" / "VOC2007"
            if not (root / "labels.txt").is_file():
                with self.timed("dataset"):
                    make_synthetic_voc(self.data, p.num_train, p.num_test, p.image_size, seed=p.seed)
            return root
        return self._voc("2007-trainval", "VOC2007")

    def test_root(self) -> Path:
        """The test VOC root (offline: the synthetic set's, whose test split is separate)."""
        return self.dataset_root() if self.profile.synthetic else self._voc("2007-test", "VOC2007-test")

    def _voc(self, voc_set: str, folder: str) -> Path:
        """``<data>/VOCdevkit/<folder>``, ``voc_set`` downloaded once per kernel."""
        if voc_set not in self._voc_sets:
            with self.timed(f"dataset {voc_set}"):
                voc_download.download_voc(self.data, sets=(voc_set,), keep_tars=False, progress=self.progress)
            self._voc_sets.add(voc_set)
        return self.data / "VOCdevkit" / folder

    def label_file(self) -> Path:
        """The class names file: the synthetic data's, the published one, else the library's names (said once)."""
        if self.profile.synthetic:
            return self.dataset_root() / "labels.txt"
        try:
            return self.fetch("voc-labels")
        except HRankError as e:
            out = self.work / "voc-model-labels-library.txt"
            if "voc-labels (library)" not in self._fetched:  # written and said once per kernel
                self._fetched["voc-labels (library)"] = out
                atomic_write_text(out, "\n".join(("BACKGROUND",) + VOC_CLASSES) + "\n")
                print(f"label file unavailable: using the library's 20 VOC class names (the published file's, "
                      f"in its order), written to {out}; why: {e}", file=sys.stderr)
            return out

    def class_names(self):
        """The class names, BACKGROUND first."""
        return read_labels(self.label_file())

    def test_dataset(self, limit: Optional[int] = None):
        """The test split (its first ``limit`` images when given)."""
        ds = VOCDataset(self.test_root(), split="test", is_test=True, class_names=self.class_names())
        ds.ids = ds.ids[:limit or None]
        return ds

    def trainval_dataset(self, model=None) -> VOCDataset:
        """The training split, as ``model`` sees it when given."""
        transform = None if model is None else TestTransform(model.image_size, model.cfg.image_mean,
                                                             model.cfg.image_std)
        return VOCDataset(self.dataset_root(), split="trainval", transform=transform, class_names=self.class_names())

    def train_config(self, net: str, epochs: int, lr: float, width: float, folder: Path, **extra) -> TrainConfig:
        """How the course trains ``net``; ``extra``: more ``TrainConfig`` fields."""
        p = self.profile
        fields = dict(datasets=[str(self.dataset_root())], validation_dataset=str(self.test_root()),
                      label_file=str(self.label_file()), net=net, batch_size=p.batch_size, num_epochs=epochs, lr=lr,
                      scheduler="cosine", optimizer=p.optimizer, augment=p.augment, init=p.init,
                      channels_last=p.channels_last,
                      checkpoint_folder=str(folder), width=width, image_size=p.image_size, seed=p.seed,
                      device=self.device, resume="auto", validation_epochs=max(2, epochs // 3), progress=self.progress)
        return TrainConfig(**dict(fields, **extra))

    def train(self, key: str, net: str, epochs: int, lr: float, hooks=None, width: float = 1.0, **extra) -> Path:
        """``models/<key>.pth``: ``net`` trained (or finetuned from ``base_net``) once, resumable; its log kept."""
        out, folder = self.path(key), self.work / "checkpoints" / key
        if not out.is_file():
            with self.timed(f"train {key}"):
                result = run_training(self.train_config(net, epochs, lr, width, folder, **extra), hooks)
            save_model(result.model, out)
        if (folder / "log.csv").is_file():  # also when the model came from an earlier run
            self.save_csv(results_files.log_name(key), pd.read_csv(folder / "log.csv"))
        return out

    def baseline(self, net: str = "vgg16-ssd") -> Path:
        """A trained detector: trained here (offline) or the published weights (full)."""
        p = self.profile
        if p.synthetic:
            if net == "vgg16-ssd":
                return self.train(net, net, p.train_epochs, p.lr, width=p.vgg_width)
            return self.train(net, net, p.mb1_epochs, p.mb1_lr, width=p.mb1_width)
        return self.fetch(net)

    def rank_dir(self, generate: Optional[bool] = None, net: str = "vgg16-ssd") -> Path:
        """HRank ranks of the baseline ``net``: on full VGG16-SSD's published ones unless ``generate``."""
        vgg = net == "vgg16-ssd"
        if vgg and not (generate or self.profile.synthetic) and (published := self.published_ranks()) is not None:
            return published
        out = self.work / ("ranks" if vgg else f"ranks-{net}")
        if not has_ranks(out, net):
            p, model = self.profile, load_model(self.baseline(net))
            with self.timed("ranks" if vgg else f"ranks {net}"):
                save_ranks(compute_ranks(model, image_batches(self.trainval_dataset(model), p.rank_batch, p.rank_limit),
                                         device=self.device, total=p.rank_limit, progress=self.progress), out)
        return out

    def published_ranks(self) -> Optional[Path]:
        """The published VGG16-SSD rank folder, or None (the student's own then stand in, recorded)."""
        try:
            path = self.fetch("vgg16-ssd-ranks")
        except HRankError as e:
            self.substitute("vgg16-ssd-ranks", f"published rank files unavailable: using your own ranks instead "
                            f"({self.work / 'ranks'}, notebook 01's rank_dir(generate=True)); why: {e}")
            return None
        self.published_used("vgg16-ssd-ranks")
        return path

    def log_file(self, model: Path) -> Path:
        """This run's copy of the training log of a model trained by the course (``log_<key>.csv``)."""
        return self.result(results_files.log_name(Path(model).stem))


# the verbs, each a function of its module taking the course first: ``course.prune()`` is ``making.prune(course)``
VERBS = {
    making: ("prune", "finetune", "finetune_rate", "model", "model_epochs",  # models, made once
             "try_compress_rate", "suggested_rate", "choose_compress_rate", "chosen_compress_rate",
             "finetune_choice", "your_model"),  # the student's rate (notebooks 02 and 03)
    student: ("prune_yours", "scan_sensitivity"),  # the student's functions as the pipeline (notebook 02)
    latency_models: ("latency_table", "budget_table", "latency_models"),  # pruning for this machine's clock
    measures: ("evaluate", "flops", "bench", "frontier", "layer_speed", "video", "settings", "rank_stability",
               "rank_comparison", "sensitivity", "criteria", "distillation", "fine_grained", "dead_filters",
               "resume_lesson"),  # measurements, then the lessons
}
for _module, _verbs in VERBS.items():
    for _verb in _verbs:
        setattr(Course, _verb, getattr(_module, _verb))
