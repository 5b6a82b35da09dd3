"""The course as data: profiles, and one function per step with files in between.

``Course(profile, run_dir)`` knows where every artifact lives. Each step returns its output path or
table, writes its results under ``run_dir/results``, and reuses what an earlier run already made
(trained models, ranks), so any notebook can start from any step and a re-run is quick.

Profiles:
- ``offline``: synthetic VOC-format data and small models trained here, no network (local default).
- ``full``: real VOC and the original project's weights and ranks via ``weights_manifest.json``.
- ``tiny``: the offline pipeline shrunk to seconds, for CI.
- ``full-rehearsal``: ``full`` at CPU sizes, run by ``rehearse`` against a local stand-in of the outside world.
"""

from __future__ import annotations

import json
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Dict, Optional, Tuple

import pandas as pd

from hrank_ssd.devices import resolve_device
from hrank_ssd.errors import HRankError
from hrank_ssd.nets.compress import PRUNED_RATE

MODEL_KEYS = ("vgg16-ssd", "vgg16-ssd-pruned", "mb1-ssd")
MODEL_TITLES = {"vgg16-ssd": "VGG16-SSD", "vgg16-ssd-pruned": "VGG16-SSD pruned (HRank)",
                "mb1-ssd": "MobileNetV1-SSD"}


@dataclass(frozen=True)
class Profile:
    name: str
    synthetic: bool = True
    num_train: int = 600
    num_test: int = 150
    image_size: int = 300
    vgg_width: float = 0.125
    mb1_width: float = 0.25
    batch_size: int = 8  # on 2 CPU cores batch 8 runs an epoch faster than 16 and takes twice the steps
    train_epochs: int = 16  # to convergence: with 9 the 4 finetune epochs lifted the pruned model above it
    lr: float = 2e-3
    optimizer: str = "adam"  # small models from scratch learn much faster with Adam than SGD
    augment: str = "light"  # photometric + flip: the synthetic shapes need no crop/expand to generalise
    init: str = "lsuv"  # unit activations from the start (models.init_from_scratch)
    mb1_epochs: int = 10
    mb1_lr: float = 2e-3
    rank_limit: int = 2
    rank_batch: int = 16
    compress_rate: str = PRUNED_RATE
    finetune_epochs: int = 4
    finetune_lr: float = 2e-4
    sensitivity_rates: Tuple[float, ...] = (0.3, 0.6, 0.9)
    sensitivity_layers: Tuple[int, ...] = (1, 4, 7, 10, 13, 14)
    sensitivity_images: int = 60
    criteria_finetune_epochs: int = 1
    bench_warmup: int = 5
    bench_runs: int = 20
    video_max_frames: Optional[int] = 60
    use_published_pruned: bool = False  # full: the original project's finetuned pruned weights (120 GPU epochs)
    student_finetune_epochs: Optional[int] = None  # notebook 03's own run when the published model stands in
    seed: int = 0
    notes: Dict[str, str] = field(default_factory=dict, compare=False)


PROFILES: Dict[str, Profile] = {
    "offline": Profile("offline"),
    "tiny": Profile("tiny", num_train=8, num_test=4, batch_size=4, train_epochs=1, mb1_epochs=1, rank_limit=1,
                    rank_batch=4, finetune_epochs=1, sensitivity_rates=(0.5,), sensitivity_layers=(1, 14),
                    sensitivity_images=4, criteria_finetune_epochs=0, bench_warmup=1, bench_runs=2,
                    video_max_frames=4),
    "full": Profile("full", synthetic=False, vgg_width=1.0, mb1_width=1.0, batch_size=8, lr=1e-5, optimizer="sgd",
                    augment="ssd", init="default",
                    finetune_epochs=120, finetune_lr=1e-5, rank_limit=5, rank_batch=128, sensitivity_images=500,
                    criteria_finetune_epochs=0, bench_warmup=10, bench_runs=50, video_max_frames=None,
                    use_published_pruned=True, student_finetune_epochs=1),
}
# The full profile's code path at CPU sizes, for ``rehearse`` (the stand-in world's few VOC images): only the
# images per step and the benchmark's runs differ from full.
PROFILES["full-rehearsal"] = replace(PROFILES["full"], name="full-rehearsal", rank_limit=1, rank_batch=4,
                                     sensitivity_images=4, bench_warmup=1, bench_runs=3, video_max_frames=8)


def get_profile(name: str, **overrides) -> Profile:
    if name not in PROFILES:
        raise HRankError(f"unknown profile {name!r}: choose one of {', '.join(PROFILES)}")
    return replace(PROFILES[name], **overrides)


def repo_root() -> Path:
    """The checkout holding notebooks/ and lib/hrank_ssd (found from this file, else the working folder)."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").is_file() and (parent / "lib" / "hrank_ssd").is_dir():
            return parent
    return Path.cwd()



SHARED_VIDEO = ("..", "shared", "data", "video", "vtest.mp4")  # relative to the repository root


class Course:
    """Paths and steps of one course run. ``work_dir`` holds reusable artifacts, ``run_dir`` this run's results."""

    def __init__(self, profile="offline", run_dir="runs/latest", work_dir="work", device=None, progress=True):
        self.profile = profile if isinstance(profile, Profile) else get_profile(profile)
        self.work = Path(work_dir) / self.profile.name
        self.run_dir = Path(run_dir)
        self.results = self.run_dir / "results"
        self.results.mkdir(parents=True, exist_ok=True)
        self.device, self.progress = str(resolve_device(device)), progress  # None: cuda when visible
        self._fetched: Dict[str, Path] = {}
        self._voc_sets: set = set()  # VOC sets checked (and downloaded if missing) in this run
        self.substitutes: Dict[str, str] = {}  # model key -> why another model stands in for it

    # ------------------------------------------------------------ bookkeeping

    def path(self, key: str) -> Path:
        return self.work / "models" / f"{key}.pth"

    def save_json(self, name: str, obj) -> Path:
        from hrank_ssd.nets.models import atomic_write_text

        path = self.results / name
        atomic_write_text(path, json.dumps(obj, indent=1, default=float))
        return path

    def fetch(self, name: str) -> Path:
        """A published artifact (weights_manifest.json), downloaded and verified once per run: every later
        call returns the same path instead of hashing a 100 MB checkpoint again."""
        if name not in self._fetched:
            from hrank_ssd.io.downloads import fetch

            self._fetched[name] = fetch(name, dest_dir=self.work.parent, progress=self.progress)
        return self._fetched[name]

    def load_json(self, name: str):
        from hrank_ssd.course.report import read_json

        return read_json(self.results, name)

    @contextmanager
    def timed(self, step: str):
        start = time.perf_counter()
        yield
        times = self.load_json("timings.json") or {}
        times[step] = round(time.perf_counter() - start, 1)
        self.save_json("timings.json", times)

    # ------------------------------------------------------------ data

    def dataset_root(self) -> Path:
        """The training (and, offline, test) VOC root: made here or downloaded."""
        p = self.profile
        if p.synthetic:
            root = self.work / "data" / "VOCdevkit" / "VOC2007"
            if not (root / "labels.txt").is_file():
                from hrank_ssd.data.synthetic import make_synthetic_voc

                with self.timed("dataset"):
                    make_synthetic_voc(self.work / "data", p.num_train, p.num_test, p.image_size, seed=p.seed)
            return root
        return self._voc("2007-trainval") / "VOC2007"

    def test_root(self) -> Path:
        if self.profile.synthetic:
            return self.dataset_root()
        return self._voc("2007-test") / "VOC2007-test"

    def _voc(self, voc_set: str) -> Path:
        """``work/data/VOCdevkit`` (on Drive when the notebook mounted it) with ``voc_set`` downloaded once:
        each notebook fetches only the sets it uses (the course trains and ranks on VOC2007 trainval and
        tests on VOC2007 test; VOC2012 is never needed), and a second VM finds them already there."""
        from hrank_ssd.io.downloads import download_voc

        devkit = self.work / "data" / "VOCdevkit"
        if voc_set not in self._voc_sets:
            with self.timed(f"dataset {voc_set}"):
                download_voc(self.work / "data", sets=(voc_set,), keep_tars=False, progress=self.progress)
            self._voc_sets.add(voc_set)
        return devkit

    def label_file(self) -> Path:
        if self.profile.synthetic:
            return self.dataset_root() / "labels.txt"
        return self.fetch("voc-labels")

    def class_names(self):
        from hrank_ssd.data.voc import read_labels

        return read_labels(self.label_file())

    def test_dataset(self, limit: Optional[int] = None):
        from hrank_ssd.data.voc import VOCDataset

        split = "test"
        ds = VOCDataset(self.test_root(), split=split, is_test=True, class_names=self.class_names())
        if limit:
            ds.ids = ds.ids[:limit]
        return ds

    # ------------------------------------------------------------ models

    def _train(self, key: str, net: str, epochs: int, lr: float, width: float, hooks=None, **extra) -> Path:
        from hrank_ssd.nets.models import save_model
        from hrank_ssd.train.training import TrainConfig, train

        out = self.path(key)
        folder = self.work / "checkpoints" / key
        if out.is_file():
            self._copy_log(folder, key)
            return out
        p = self.profile
        cfg = TrainConfig(datasets=[str(self.dataset_root())], validation_dataset=str(self.test_root()),
                          label_file=str(self.label_file()), net=net, batch_size=p.batch_size, num_epochs=epochs,
                          lr=lr, scheduler="cosine", optimizer=p.optimizer, augment=p.augment, init=p.init,
                          checkpoint_folder=str(folder), width=width,
                          image_size=p.image_size, seed=p.seed, device=self.device, resume="auto",
                          validation_epochs=max(1, epochs // 3), progress=self.progress, **extra)
        with self.timed(f"train {key}"):
            result = train(cfg, hooks)
        save_model(result.model, out)
        self._copy_log(folder, key)
        return out

    def _copy_log(self, folder: Path, key: str) -> None:
        """Training logs belong to this run's results too (also when the model came from an earlier run)."""
        if (folder / "log.csv").is_file():
            pd.read_csv(folder / "log.csv").to_csv(self.results / f"log_{key}.csv", index=False)

    def baseline(self, net: str = "vgg16-ssd") -> Path:
        """A trained detector: trained here (offline) or the published weights (full)."""
        if self.profile.synthetic:
            if net == "vgg16-ssd":
                return self._train(net, net, self.profile.train_epochs, self.profile.lr, self.profile.vgg_width)
            return self._train(net, net, self.profile.mb1_epochs, self.profile.mb1_lr, self.profile.mb1_width)
        return self.fetch(net)

    def rank_dir(self, generate: Optional[bool] = None) -> Path:
        """HRank ranks of the baseline VGG16-SSD: by default the original project's published folder on the
        full profile, generated here otherwise; ``generate=True`` computes the student's own (``work/ranks``)."""
        from hrank_ssd.data.voc import TestTransform, VOCDataset
        from hrank_ssd.hrank.ranks import compute_ranks, image_batches, save_ranks
        from hrank_ssd.nets.models import load_model

        if generate is None:
            generate = self.profile.synthetic
        if not generate and not self.profile.synthetic:
            return self.fetch("vgg16-ssd-ranks")
        out = self.work / "ranks"
        if (out / "rank_conv14.npy").is_file():
            return out
        p = self.profile
        model = load_model(self.baseline("vgg16-ssd"))
        ds = VOCDataset(self.dataset_root(), split="trainval",
                        transform=TestTransform(model.image_size, model.cfg.image_mean, model.cfg.image_std),
                        class_names=self.class_names())
        with self.timed("ranks"):
            ranks = compute_ranks(model, image_batches(ds, p.rank_batch, p.rank_limit), device=self.device,
                                  total=p.rank_limit, progress=self.progress)
            save_ranks(ranks, out)
        return out

    def rank_comparison(self) -> pd.DataFrame:
        """The student's ranks (computed here) against the published ones: per layer, how many of the kept
        filters at the profile's compress rate both keep. Needs the published ranks (full profile)."""
        from hrank_ssd.hrank.pruning import kept_agreement
        from hrank_ssd.nets.models import load_model

        model = load_model(self.baseline("vgg16-ssd"))
        rows = kept_agreement(model, self.profile.compress_rate, self.rank_dir(generate=True),
                              self.rank_dir(generate=False))
        return pd.DataFrame(rows)

    def pruned(self, criterion: str = "hrank") -> Path:
        """The baseline pruned with ``criterion`` at the profile's compress rate, before finetuning."""
        from hrank_ssd.hrank.pruning import prune_model, save_pruned
        from hrank_ssd.nets.models import load_model

        out = self.path(f"vgg16-ssd-{criterion}-init")
        if out.is_file():
            return out
        model = load_model(self.baseline("vgg16-ssd"))
        rank_dir = self.rank_dir() if criterion == "hrank" else None
        pruned, kept = prune_model(model, self.profile.compress_rate, criterion, rank_dir, seed=self.profile.seed)
        save_pruned(pruned, out, self.profile.compress_rate, criterion, kept)
        return out

    def finetuned(self, criterion: str = "hrank", epochs: Optional[int] = None, distill: bool = False,
                  hooks=None) -> Path:
        """Prune then finetune (the original train_ssd_prune_eval.py); key ``vgg16-ssd-pruned`` for hrank.
        ``hooks``: :class:`~hrank_ssd.train.training.Hooks` for the training run (e.g. a live loss curve)."""
        p = self.profile
        epochs = p.finetune_epochs if epochs is None else epochs
        key = "vgg16-ssd-pruned" if (criterion == "hrank" and epochs == p.finetune_epochs and not distill) \
            else f"vgg16-ssd-{criterion}-ft{epochs}{'-kd' if distill else ''}"
        if epochs == 0:
            return self.pruned(criterion)
        if key == "vgg16-ssd-pruned" and not p.synthetic and p.use_published_pruned:
            return self.fetch("vgg16-ssd-hrank")
        extra = {"distill_from": str(self.baseline("vgg16-ssd"))} if distill else {}
        return self._train(key, "vgg16-ssd", epochs, p.finetune_lr, 1.0, hooks, base_net=str(self.pruned(criterion)),
                           **extra)

    def student_finetuned(self, hooks=None) -> Path:
        """Notebook 03's finetuning: the profile's own (``finetuned()``), or, where the published pruned model
        stands in for the original 120 GPU epochs (full), a short run of ``student_finetune_epochs`` epochs
        from the student's own pruned model (about 600 iterations on VOC2007 trainval at batch 8), resumable.
        Its per-epoch log is :meth:`log_file` of the returned path."""
        p = self.profile
        if p.use_published_pruned and not p.synthetic and p.student_finetune_epochs:
            return self.finetuned(epochs=p.student_finetune_epochs, hooks=hooks)
        return self.finetuned(hooks=hooks)

    def log_file(self, model: Path) -> Path:
        """This run's copy of the training log of a model trained by the course (``log_<key>.csv``)."""
        return self.results / f"log_{Path(model).stem}.csv"

    def pruned_model(self) -> Path:
        """The finetuned pruned detector that notebooks 04-06 measure: :meth:`finetuned`. On the full profile,
        when the published one cannot be had (Drive over quota, a corrupt copy), the course goes on with the
        student's own (:meth:`student_finetuned`), says so once, and records it in ``results/substitutes.json``."""
        try:
            return self.finetuned()
        except HRankError as e:
            if self.profile.synthetic or not self.profile.use_published_pruned:
                raise
            if "vgg16-ssd-pruned" not in self.substitutes:
                self.substitutes["vgg16-ssd-pruned"] = f"published pruned model unavailable ({e}); using your own " \
                    f"finetuned pruned model ({self.profile.student_finetune_epochs} epoch(s), notebook 03) instead"
                print(self.substitutes["vgg16-ssd-pruned"], file=sys.stderr)
                self.save_json("substitutes.json", self.substitutes)
            return self.student_finetuned()

    def model_path(self, key: str) -> Path:
        return {"vgg16-ssd": lambda: self.baseline("vgg16-ssd"), "mb1-ssd": lambda: self.baseline("mb1-ssd"),
                "vgg16-ssd-pruned": self.pruned_model}[key]()

    # ------------------------------------------------------------ measurements

    def evaluate(self, keys=MODEL_KEYS) -> Tuple[pd.DataFrame, pd.DataFrame]:
        """mAP and per-class AP of each model; returns (summary, per-class long table)."""
        from hrank_ssd.measure.evaluation import evaluate_model, mean_ap
        from hrank_ssd.nets.models import count_parameters, load_model

        ds = self.test_dataset()
        summary, per_class = [], []
        for key in keys:
            model = load_model(self.model_path(key))
            with self.timed(f"eval {key}"):
                table, avg = evaluate_model(model, ds, self.run_dir / "eval" / key, device=self.device,
                                            progress=self.progress)
            title = MODEL_TITLES[key] + (" (yours: published unavailable)" if key in self.substitutes else "")
            summary.append({"model": key, "title": title, "mAP": mean_ap(table),
                            "avg_predict_s": avg, "params": count_parameters(model)})
            per_class.append(table.assign(model=key))
        summary_df, per_class_df = pd.DataFrame(summary), pd.concat(per_class, ignore_index=True)
        summary_df.to_csv(self.results / "map.csv", index=False)
        per_class_df.to_csv(self.results / "per_class_ap.csv", index=False)
        return summary_df, per_class_df

    def flops(self) -> pd.DataFrame:
        """Exact params/MACs of the three detectors at full size (21 classes, 300x300) + the seed figures."""
        from hrank_ssd.measure.flops import flops_table

        table = flops_table()
        table.to_csv(self.results / "flops.csv", index=False)
        return table

    def bench(self, trained: bool = False) -> pd.DataFrame:
        """CPU latency of the three full-size detectors (random weights: shapes decide speed)."""
        from hrank_ssd.measure.bench import benchmark_models, results_json
        from hrank_ssd.nets.models import build_model, load_model

        p = self.profile
        if trained:
            models = {k: load_model(self.model_path(k)) for k in MODEL_KEYS}
        else:
            models = {"vgg16-ssd": build_model("vgg16-ssd", 21),
                      "vgg16-ssd-pruned": build_model("vgg16-ssd", 21, compress_rate=p.compress_rate),
                      "mb1-ssd": build_model("mb1-ssd", 21)}
        with self.timed("bench"):
            table = benchmark_models(models, device=self.device, warmup=p.bench_warmup, runs=p.bench_runs)
        self.save_json("machine.json", {k: v for k, v in results_json(table).items() if k != "results"})
        table.to_csv(self.results / f"bench{'_trained' if trained else ''}.csv", index=False)
        return table

    def street_clip(self) -> Tuple[Optional[Path], Optional[str]]:
        """The real street clip and where it came from: ``../shared`` beside the checkout, else (full profile)
        the manifest's ``street-clip``; ``(None, None)`` when neither is available (the reason is printed)."""
        shared = repo_root().joinpath(*SHARED_VIDEO)
        if shared.is_file():
            return shared, "real clip (../shared)"
        if not self.profile.synthetic:
            try:
                return self.fetch("street-clip"), "real clip (manifest: street-clip)"
            except HRankError as e:
                print(f"street clip unavailable ({e}); using a synthetic clip", file=sys.stderr)
        return None, None

    def video(self, clip=None, out_name: str = "demo_pruned.mp4") -> dict:
        """The finetuned pruned detector on a clip: ``run_dir/video/<out_name>`` and ``results/video.json``.

        The clip: ``clip``, else ``../shared/data/video/vtest.mp4`` beside the checkout when present, else (full
        profile: network allowed) the manifest's ``street-clip``, checksum-verified, else a synthetic pan over
        the test images (written to ``run_dir/video/synthetic.mp4``). ``video.json`` says which was used.
        """
        from hrank_ssd.course import video
        from hrank_ssd.nets.models import load_model
        from hrank_ssd.nets.predictor import Predictor

        out_dir = self.run_dir / "video"
        out_dir.mkdir(parents=True, exist_ok=True)
        clip, source = (clip, "given clip") if clip is not None else self.street_clip()
        if clip is None:
            source = "synthetic clip"
            clip = video.make_synthetic_video(out_dir / "synthetic.mp4", self.test_root(), seconds=2, fps=10)
        predictor = Predictor(load_model(self.pruned_model()), self.device)
        info = video.process_video(predictor, self.class_names(), clip, out_dir / out_name,
                                   max_frames=self.profile.video_max_frames, progress=self.progress)
        info = {"input": str(clip), "source": source, **info}
        self.save_json("video.json", info)
        return info

    def layer_speed(self) -> Tuple[pd.DataFrame, pd.DataFrame, Dict[str, float]]:
        """Where the full-size pruned VGG16-SSD's CPU time goes: per-layer time and MACs of both models, the
        same by pruning group, and the speed-up a MAC-proportional time would give (``bench.mac_ceiling``)."""
        from hrank_ssd.measure.bench import (
            group_speedups,
            layer_times_and_macs,
            mac_ceiling,
            vgg_pruning_groups,
        )
        from hrank_ssd.nets.models import build_model

        p = self.profile
        models = {"full": build_model("vgg16-ssd", 21).eval(),
                  "pruned": build_model("vgg16-ssd", 21, compress_rate=p.compress_rate).eval()}
        with self.timed("layer_speed"):
            layers = layer_times_and_macs(models, runs=max(1, p.bench_runs // 4), warmup=min(2, p.bench_warmup))
        groups = group_speedups(layers, vgg_pruning_groups(p.compress_rate))
        layers.to_csv(self.results / "layer_speed.csv", index=False)
        groups.to_csv(self.results / "layer_speed_groups.csv")
        return layers, groups, mac_ceiling(groups)

    def sensitivity(self) -> pd.DataFrame:
        from hrank_ssd.measure.sensitivity import layer_sensitivity
        from hrank_ssd.nets.models import load_model

        out = self.results / "sensitivity.csv"
        p = self.profile
        model = load_model(self.baseline("vgg16-ssd"))
        with self.timed("sensitivity"):
            table = layer_sensitivity(model, self.test_dataset(p.sensitivity_images), "hrank", self.rank_dir(),
                                      p.sensitivity_rates, p.sensitivity_layers, device=self.device,
                                      progress=self.progress)
        table.to_csv(out, index=False)
        return table

    def criteria(self) -> pd.DataFrame:
        """hrank vs l1 vs random at the same compress rate, right after pruning and after the same finetune."""
        from hrank_ssd.measure.sensitivity import compare_criteria
        from hrank_ssd.nets.models import load_model

        p = self.profile
        epochs = p.criteria_finetune_epochs
        finetune = (lambda _pruned, criterion: load_model(self.finetuned(criterion, epochs))) if epochs else None
        with self.timed("criteria"):
            table = compare_criteria(load_model(self.baseline("vgg16-ssd")), self.test_dataset(), p.compress_rate,
                                     self.rank_dir(), finetune=finetune, device=self.device, seed=p.seed)
        table.to_csv(self.results / "criteria.csv", index=False)
        return table

    def distillation(self) -> pd.DataFrame:
        """The pruned model finetuned with and without distillation from the unpruned one, same budget."""
        from hrank_ssd.measure.sensitivity import quick_map
        from hrank_ssd.nets.models import load_model

        epochs = self.profile.criteria_finetune_epochs or 1
        ds = self.test_dataset()
        with self.timed("distillation"):
            rows = [{"finetune": name, "epochs": epochs,
                     "mAP": quick_map(load_model(self.finetuned("hrank", epochs, distill=kd)), ds)}
                    for name, kd in (("plain", False), ("distilled", True))]
        table = pd.DataFrame(rows)
        table.to_csv(self.results / "distillation.csv", index=False)
        return table

    def settings(self) -> dict:
        return asdict(self.profile)
