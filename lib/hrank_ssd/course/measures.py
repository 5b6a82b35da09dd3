"""The course's measurements of the compared models: mAP, FLOPs, speed, where the time goes, the video demo.

Each writes its results files (:mod:`hrank_ssd.course.results`) and returns the table.
"""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path
from typing import Dict, Optional, Tuple

import pandas as pd

from hrank_ssd.course import video as video_demo
from hrank_ssd.course.folders import repo_root
from hrank_ssd.course.models import MODEL_KEYS, MODEL_TITLES
from hrank_ssd.errors import HRankError
from hrank_ssd.measure.bench import benchmark_models, results_json
from hrank_ssd.measure.evaluation import evaluate_model, mean_ap
from hrank_ssd.measure.layer_times import group_speedups, layer_times_and_macs, mac_ceiling, pruning_groups
from hrank_ssd.measure.published_flops import flops_table
from hrank_ssd.nets.compress import format_compress_rate
from hrank_ssd.nets.models import build_model, count_parameters, load_model
from hrank_ssd.nets.predictor import Predictor

SHARED_VIDEO = ("..", "shared", "data", "video", "vtest.mp4")  # relative to the repository root


def evaluate(course, keys=MODEL_KEYS) -> Tuple[pd.DataFrame, pd.DataFrame]:
    """mAP and per-class AP of each model: (summary, per-class long table), ``map.csv`` and ``per_class_ap.csv``."""
    ds, summary, per_class = course.test_dataset(), [], []
    for key in keys:
        model = load_model(course.model(key))
        with course.timed(f"eval {key}"):
            table, avg = evaluate_model(model, ds, course.run_dir / "eval" / key, device=course.device,
                                        progress=course.progress, desc=f"eval {key}")
        title = MODEL_TITLES[key] + (" (yours: published unavailable)" if key in course.substitutes else "")
        summary.append({"model": key, "title": title, "mAP": mean_ap(table), "avg_predict_s": avg,
                        "params": count_parameters(model)})
        per_class.append(table.assign(model=key))
    summary_df, per_class_df = pd.DataFrame(summary), pd.concat(per_class, ignore_index=True)
    summary_df.to_csv(course.result("map.csv"), index=False)
    per_class_df.to_csv(course.result("per_class_ap.csv"), index=False)
    return summary_df, per_class_df


def flops(course) -> pd.DataFrame:
    """Exact params/MACs of the three detectors at full size (21 classes, 300x300) + the published figures."""
    table = flops_table()
    table.to_csv(course.result("flops.csv"), index=False)
    return table


def _bench(course, models, name: str, **kw) -> pd.DataFrame:
    p = course.profile
    with course.timed(name):
        table = benchmark_models(models, device=course.device, warmup=p.bench_warmup, runs=p.bench_runs,
                                 progress=course.progress, **kw)
    return table


def bench(course) -> pd.DataFrame:
    """CPU latency of the three full-size detectors (random weights: shapes decide speed): ``bench.csv``."""
    table = _bench(course, {"vgg16-ssd": build_model("vgg16-ssd", 21), "mb1-ssd": build_model("mb1-ssd", 21),
                            "vgg16-ssd-pruned": build_model("vgg16-ssd", 21, compress_rate=course.profile.compress_rate)
                            }, "bench")
    course.save_json("machine.json", {k: v for k, v in results_json(table).items() if k != "results"})
    table.to_csv(course.result("bench.csv"), index=False)
    return table


def frontier(course) -> pd.DataFrame:
    """The compared models as evaluated, timed here (interleaved; median and p90 ms), with exact MACs, params,
    the latency table's prediction (VGG16-SSDs) and finetune epochs: ``frontier.csv``, ``frontier_machine.json``."""
    models = {k: load_model(course.model(k)) for k in MODEL_KEYS}
    table = course.latency_table()
    front = _bench(course, models, "frontier", predict=False)
    front.insert(1, "net", [m.cfg.name for m in models.values()])
    front["predicted_ms"] = [table.predict(m.plan.prunable) if m.cfg.name == table.net else float("nan")
                             for m in models.values()]
    front["finetune_epochs"] = [course.model_epochs(k) for k in models]
    course.save_json("frontier_machine.json", {k: v for k, v in results_json(front).items() if k != "results"})
    front.to_csv(course.result("frontier.csv"), index=False)
    return front


def layer_speed(course) -> Tuple[pd.DataFrame, pd.DataFrame, Dict[str, float]]:
    """Where the full-size pruned VGG16-SSD's CPU time goes: per-layer time and MACs of both models, the same by
    pruning group, and the speed-up a MAC-proportional time would give (``mac_ceiling``)."""
    p = course.profile
    models = {"full": build_model("vgg16-ssd", 21).eval(),
              "pruned": build_model("vgg16-ssd", 21, compress_rate=p.compress_rate).eval()}
    with course.timed("layer_speed"):
        layers = layer_times_and_macs(models, runs=max(1, p.bench_runs // 4), warmup=min(2, p.bench_warmup),
                                      progress=course.progress)
    groups = group_speedups(layers, pruning_groups(p.compress_rate))
    layers.to_csv(course.result("layer_speed.csv"), index=False)
    groups.to_csv(course.result("layer_speed_groups.csv"))
    return layers, groups, mac_ceiling(groups)


def street_clip(course) -> Tuple[Optional[Path], Optional[str]]:
    """The real street clip and its source: ``../shared`` beside the checkout, else (full) the manifest's
    ``street-clip``; ``(None, None)`` when neither is available (the reason printed)."""
    shared = repo_root().joinpath(*SHARED_VIDEO)
    if shared.is_file():
        return shared, "real clip (../shared)"
    if not course.profile.synthetic:
        try:
            return course.fetch("street-clip"), "real clip (manifest: street-clip)"
        except HRankError as e:
            print(f"street clip unavailable ({e}); using a synthetic clip", file=sys.stderr)
    return None, None


def video(course, clip=None, out_name: str = "demo_pruned.mp4") -> dict:
    """The finetuned pruned detector on ``clip`` (else :func:`street_clip`, else a synthetic pan over the test
    images): ``run_dir/video/<out_name>`` and ``results/video.json``, which says which clip was used."""
    out_dir = course.run_dir / "video"
    out_dir.mkdir(parents=True, exist_ok=True)
    clip, source = (clip, "given clip") if clip is not None else street_clip(course)
    if clip is None:
        source = "synthetic clip"
        clip = video_demo.make_synthetic_video(out_dir / "synthetic.mp4", course.test_root(), seconds=2, fps=10)
    predictor = Predictor(load_model(course.model("vgg16-ssd-pruned")), course.device)
    info = video_demo.process_video(predictor, course.class_names(), clip, out_dir / out_name,
                                    max_frames=course.profile.video_max_frames, progress=course.progress)
    info = {"input": str(clip), "source": source, **info}
    course.save_json("video.json", info)
    return info


def settings(course) -> dict:
    """The profile as ``settings.json`` stores it (compress rates in the syntax users write)."""
    return dict(asdict(course.profile), compress_rate=format_compress_rate(course.profile.compress_rate),
                mb1_compress_rate=format_compress_rate(course.profile.mb1_compress_rate))
