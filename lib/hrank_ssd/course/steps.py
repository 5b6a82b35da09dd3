"""The course as data: one method per step with files in between.

``Course(profile, run_dir)`` knows where every artifact lives. Each step returns its output path or
table, writes its results under ``run_dir/results`` (the files of :mod:`hrank_ssd.course.results`), and reuses
what an earlier run already made (trained models, ranks: :class:`~hrank_ssd.course.workspace.Workspace`), so
any notebook can start from any step and a re-run is quick; the pruned models beyond the paper rate (for the clock,
MobileNetV1-SSD's) are :class:`~hrank_ssd.course.pruned_models.PrunedModels`, the short side lessons (rank
stability, fine-grained pruning, near-dead filters) :class:`~hrank_ssd.course.lessons.Lessons`. The profiles are
:mod:`hrank_ssd.course.profiles`.
"""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path
from typing import Dict, Optional, Tuple

import pandas as pd

from hrank_ssd.course import video
from hrank_ssd.course.folders import repo_root
from hrank_ssd.course.lessons import Lessons
from hrank_ssd.course.results import MODEL_KEYS, MODEL_TITLES
from hrank_ssd.errors import HRankError
from hrank_ssd.hrank.pruning import kept_agreement
from hrank_ssd.measure.bench import benchmark_models, results_json
from hrank_ssd.measure.evaluation import evaluate_model, mean_ap
from hrank_ssd.measure.layer_times import group_speedups, layer_times_and_macs, mac_ceiling, pruning_groups
from hrank_ssd.measure.published_flops import flops_table
from hrank_ssd.measure.sensitivity import compare_criteria, layer_sensitivity, quick_map
from hrank_ssd.nets.compress import format_compress_rate
from hrank_ssd.nets.models import build_model, count_parameters, load_model
from hrank_ssd.nets.predictor import Predictor

SHARED_VIDEO = ("..", "shared", "data", "video", "vtest.mp4")  # relative to the repository root


class Course(Lessons):
    """Paths and steps of one course run. ``work_dir`` holds reusable artifacts, ``run_dir`` this run's results."""

    def rank_comparison(self) -> pd.DataFrame:
        """The student's ranks (computed here) against the published ones: per layer, how many of the kept
        filters at the profile's compress rate both keep. Needs the published ranks (full profile); without them
        (they could not be downloaded) an empty table, and the reason is printed."""
        published = self.published_ranks()
        if published is None:
            print("no comparison: the published ranks are unavailable (see above), so yours stand in for them",
                  file=sys.stderr)
            return pd.DataFrame()
        model = load_model(self.baseline("vgg16-ssd"))
        rows = kept_agreement(model, self.profile.compress_rate, self.rank_dir(generate=True), published)
        return pd.DataFrame(rows)

    def evaluate(self, keys=MODEL_KEYS) -> Tuple[pd.DataFrame, pd.DataFrame]:
        """mAP and per-class AP of each model; returns (summary, per-class long table)."""
        ds = self.test_dataset()
        summary, per_class = [], []
        for key in keys:
            model = load_model(self.model_path(key))
            with self.timed(f"eval {key}"):
                table, avg = evaluate_model(model, ds, self.run_dir / "eval" / key, device=self.device,
                                            progress=self.progress, desc=f"eval {key}")
            title = MODEL_TITLES[key] + (" (yours: published unavailable)" if key in self.substitutes else "")
            summary.append({"model": key, "title": title, "mAP": mean_ap(table),
                            "avg_predict_s": avg, "params": count_parameters(model)})
            per_class.append(table.assign(model=key))
        summary_df, per_class_df = pd.DataFrame(summary), pd.concat(per_class, ignore_index=True)
        summary_df.to_csv(self.result("map.csv"), index=False)
        per_class_df.to_csv(self.result("per_class_ap.csv"), index=False)
        return summary_df, per_class_df

    def flops(self) -> pd.DataFrame:
        """Exact params/MACs of the three detectors at full size (21 classes, 300x300) + the published figures."""
        table = flops_table()
        table.to_csv(self.result("flops.csv"), index=False)
        return table

    def bench(self, trained: bool = False) -> pd.DataFrame:
        """CPU latency of the three full-size detectors (random weights: shapes decide speed)."""
        p = self.profile
        if trained:
            models = {k: load_model(self.model_path(k)) for k in MODEL_KEYS}
        else:
            models = {"vgg16-ssd": build_model("vgg16-ssd", 21),
                      "vgg16-ssd-pruned": build_model("vgg16-ssd", 21, compress_rate=p.compress_rate),
                      "mb1-ssd": build_model("mb1-ssd", 21)}
        with self.timed("bench"):
            table = benchmark_models(models, device=self.device, warmup=p.bench_warmup, runs=p.bench_runs,
                                     progress=self.progress)
        self.save_json("machine.json", {k: v for k, v in results_json(table).items() if k != "results"})
        table.to_csv(self.result("bench_trained.csv" if trained else "bench.csv"), index=False)
        return table

    def frontier(self) -> pd.DataFrame:
        """The compared models as evaluated (trained, at the profile's widths) on this machine: forward latency
        (interleaved; median and p90 ms), exact MACs and params, the latency this machine's table predicts for the
        VGG16-SSDs, and each model's finetuning epochs. Writes ``results/frontier.csv`` and
        ``frontier_machine.json`` (device, CPU or GPU name, threads); the report joins it with ``map.csv``."""
        p = self.profile
        models = {k: load_model(self.model_path(k)) for k in MODEL_KEYS}
        table = self.latency_table()
        with self.timed("frontier"):
            bench = benchmark_models(models, device=self.device, warmup=p.bench_warmup, runs=p.bench_runs,
                                     predict=False, progress=self.progress)
        bench.insert(1, "net", [m.cfg.name for m in models.values()])
        bench["predicted_ms"] = [table.predict(m.plan.prunable) if m.cfg.name == table.net else float("nan")
                                 for m in models.values()]
        bench["finetune_epochs"] = [self.finetune_epochs(k) for k in models]
        self.save_json("frontier_machine.json", {k: v for k, v in results_json(bench).items() if k != "results"})
        bench.to_csv(self.result("frontier.csv"), index=False)
        return bench

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
        same by pruning group, and the speed-up a MAC-proportional time would give (``mac_ceiling``)."""
        p = self.profile
        models = {"full": build_model("vgg16-ssd", 21).eval(),
                  "pruned": build_model("vgg16-ssd", 21, compress_rate=p.compress_rate).eval()}
        with self.timed("layer_speed"):
            layers = layer_times_and_macs(models, runs=max(1, p.bench_runs // 4), warmup=min(2, p.bench_warmup),
                                          progress=self.progress)
        groups = group_speedups(layers, pruning_groups(p.compress_rate))
        layers.to_csv(self.result("layer_speed.csv"), index=False)
        groups.to_csv(self.result("layer_speed_groups.csv"))
        return layers, groups, mac_ceiling(groups)

    def sensitivity(self) -> pd.DataFrame:
        """mAP of the baseline with one layer pruned at a time, at each of the profile's rates (no finetuning)."""
        p = self.profile
        model = load_model(self.baseline("vgg16-ssd"))
        with self.timed("sensitivity"):
            table = layer_sensitivity(model, self.test_dataset(p.sensitivity_images), "hrank", self.rank_dir(),
                                      p.sensitivity_rates, p.sensitivity_layers, device=self.device,
                                      progress=self.progress)
        table.to_csv(self.result("sensitivity.csv"), index=False)
        return table

    def criteria(self) -> pd.DataFrame:
        """hrank vs l1 vs random at the same compress rate, right after pruning and after the same finetune."""
        p = self.profile
        epochs = p.criteria_finetune_epochs
        finetune = (lambda _pruned, criterion: load_model(self.finetuned(criterion, epochs))) if epochs else None
        with self.timed("criteria"):
            table = compare_criteria(load_model(self.baseline("vgg16-ssd")), self.test_dataset(), p.compress_rate,
                                     self.rank_dir(), finetune=finetune, device=self.device, seed=p.seed,
                                     progress=self.progress)
        table.to_csv(self.result("criteria.csv"), index=False)
        return table

    def distillation(self) -> pd.DataFrame:
        """The pruned model finetuned with and without distillation from the unpruned one, same budget."""
        epochs = self.profile.criteria_finetune_epochs or 1
        ds = self.test_dataset()
        with self.timed("distillation"):
            rows = [{"finetune": name, "epochs": epochs,
                     "mAP": quick_map(load_model(self.finetuned("hrank", epochs, distill=kd)), ds, self.device,
                                      progress=self.progress, desc=f"mAP {name}")}
                    for name, kd in (("plain", False), ("distilled", True))]
        table = pd.DataFrame(rows)
        table.to_csv(self.result("distillation.csv"), index=False)
        return table

    def settings(self) -> dict:
        """The profile as ``settings.json`` stores it (the compress rate in the syntax users write)."""
        return dict(asdict(self.profile), compress_rate=format_compress_rate(self.profile.compress_rate),
                    mb1_compress_rate=format_compress_rate(self.profile.mb1_compress_rate))
