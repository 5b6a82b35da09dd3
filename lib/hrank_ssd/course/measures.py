"""The course's measurements and lessons: each writes its results files and returns the table."""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

import pandas as pd

from hrank_ssd.course import video as video_demo
from hrank_ssd.course.making import rates_of
from hrank_ssd.course.models import MODEL_KEYS, PAPER, fair_epochs
from hrank_ssd.course.report_tables import finetune_note, title, your_key
from hrank_ssd.course.results import repo_root
from hrank_ssd.errors import HRankError
from hrank_ssd.hrank.pruning import kept_agreement
from hrank_ssd.hrank.ranks import load_ranks
from hrank_ssd.hrank.stability import dead_filter_table
from hrank_ssd.hrank.stability import rank_stability as stability_table
from hrank_ssd.measure.bench import benchmark_models, results_json
from hrank_ssd.measure.evaluation import evaluate_model, mean_ap
from hrank_ssd.measure.fine_grained import compare_fine_grained
from hrank_ssd.measure.layer_times import group_speedups, layer_times_and_macs, mac_ceiling, pruning_groups
from hrank_ssd.measure.published_flops import flops_table
from hrank_ssd.measure.sensitivity import compare_criteria, every_layer_and_rate, layer_sensitivity, quick_map
from hrank_ssd.nets.compress import format_compress_rate
from hrank_ssd.nets.models import build_model, count_parameters, load_model
from hrank_ssd.nets.predictor import Predictor
from hrank_ssd.nets.registry import get_net
from hrank_ssd.train.resume_check import steps_per_epoch, stopped_and_resumed

SHARED_VIDEO = ("..", "shared", "data", "video", "vtest.mp4")  # relative to the repository root


def yours(course) -> dict:
    """``yours.json``: the student's rate, and its key (``model``) or the paper-rate model it equals (``same_as``)."""
    (rates, source), path = course.chosen_compress_rate(), course.your_model()
    same = path is not None and path.resolve() == Path(course.model(PAPER)).resolve()
    return {"compress_rate": format_compress_rate(rates), "source": source, "file": path.name if path else None,
            "model": your_key(rates) if path is not None and not same else None, "same_as": PAPER if same else None}


def compared(course, keys=MODEL_KEYS) -> Tuple[Dict[str, Path], dict]:
    """The checkpoints of the compared models ``keys``, and the student's when it is another model; :func:`yours`."""
    paths, mine = {key: course.model(key) for key in keys}, yours(course)
    if mine["model"]:
        paths[mine["model"]] = course.your_model()
    return paths, mine


def evaluate(course, keys=MODEL_KEYS) -> Tuple[pd.DataFrame, pd.DataFrame]:
    """``map.csv`` and ``per_class_ap.csv`` of each :func:`compared` model (detections in ``run_dir/eval/<key>``)."""
    (paths, mine), ds, summary, per_class = compared(course, keys), course.test_dataset(), [], []
    fair = fair_epochs(course.profile)
    for key, path in paths.items():
        model, epochs = load_model(path), course.model_epochs(key)
        with course.timed(f"eval {key}"):
            table, avg = evaluate_model(model, ds, eval_dir(course, key), device=course.device,
                                        progress=course.progress, desc=f"eval {key}")
        name = title(key) + (" (yours: published unavailable)" if key in course.substitutes else "")
        summary.append({"model": key, "title": name, "mAP": mean_ap(table), "avg_predict_s": avg,
                        "params": count_parameters(model), "finetune_epochs": epochs,
                        "fair_epochs": fair, "note": finetune_note(epochs, fair)})
        per_class.append(table.assign(model=key))
    course.save_json("yours.json", mine)
    return (course.save_csv("map.csv", pd.DataFrame(summary)),
            course.save_csv("per_class_ap.csv", pd.concat(per_class, ignore_index=True)))


def eval_dir(course, key: str) -> Path:
    """Where :func:`evaluate` keeps the model ``key``'s detection files (``det_test_<class>.txt``) and ``ap.csv``."""
    return course.run_dir / "eval" / key


def flops(course) -> pd.DataFrame:
    """Exact params/MACs of the three detectors at full size (21 classes, 300x300) + the published figures."""
    return course.save_csv("flops.csv", flops_table())


def _bench(course, models, name: str, machine_file: str, **kw) -> pd.DataFrame:
    """``models`` timed with the profile's benchmark settings; the machine they ran on into ``machine_file``."""
    with course.timed(name):
        table = benchmark_models(models, device=course.device, warmup=course.profile.bench_warmup,
                                 runs=course.profile.bench_runs, progress=course.progress, **kw)
    course.save_json(machine_file, {k: v for k, v in results_json(table).items() if k != "results"})
    return table


def bench(course) -> pd.DataFrame:
    """``bench.csv``: latency of the full-size detectors (random weights: shapes decide speed), yours among them."""
    models = {"vgg16-ssd": build_model("vgg16-ssd", 21), "mb1-ssd": build_model("mb1-ssd", 21),
              PAPER: build_model("vgg16-ssd", 21, compress_rate=course.profile.compress_rate)}
    rates = course.chosen_compress_rate()[0]
    if course.your_model() is not None and rates != rates_of(course):  # the paper rate's shape: its row says it
        models[your_key(rates)] = build_model("vgg16-ssd", 21, compress_rate=rates)
    return course.save_csv("bench.csv", _bench(course, models, "bench", "machine.json"))


def frontier(course) -> pd.DataFrame:
    """``frontier.csv``: the compared models (and yours) timed here, with MACs, params, predicted ms, epochs."""
    models = {k: load_model(path) for k, path in compared(course)[0].items()}
    table = course.latency_table()
    front = _bench(course, models, "frontier", "frontier_machine.json", predict=False)
    front.insert(1, "net", [m.cfg.name for m in models.values()])
    front["predicted_ms"] = [table.predict(m.plan.prunable) if m.cfg.name == table.net else float("nan")
                             for m in models.values()]
    front["finetune_epochs"] = [course.model_epochs(k) for k in models]
    front["fair_epochs"] = fair_epochs(course.profile)
    first = {k: sum(m.plan.prunable[:sum(n for _, n in get_net(m.cfg.name).stages[:2])]) for k, m in models.items()}
    front["first_stages_kept"] = [first[k] / first[m.cfg.name] if m.cfg.name in first else float("nan")
                                  for k, m in models.items()]  # the layers at the two largest image sizes
    return course.save_csv("frontier.csv", front)


def layer_speed(course) -> Tuple[pd.DataFrame, pd.DataFrame, Dict[str, float]]:
    """Where the full-size pruned VGG16-SSD's time goes: per layer, per pruning group, and the MAC ceiling."""
    p = course.profile
    models = {"full": build_model("vgg16-ssd", 21).eval(),
              "pruned": build_model("vgg16-ssd", 21, compress_rate=p.compress_rate).eval()}
    with course.timed("layer_speed"):
        layers = layer_times_and_macs(models, runs=max(1, p.bench_runs // 4), warmup=min(2, p.bench_warmup),
                                      progress=course.progress)
    groups = group_speedups(layers, pruning_groups(p.compress_rate))
    course.save_csv("layer_speed.csv", layers)
    groups.to_csv(course.result("layer_speed_groups.csv"))
    return layers, groups, mac_ceiling(groups)


def street_clip(course) -> Tuple[Optional[Path], Optional[str]]:
    """The real street clip and its source (``../shared``, else the manifest's on full), else ``(None, None)``."""
    shared = repo_root().joinpath(*SHARED_VIDEO)
    if shared.is_file():
        return shared, "real clip (../shared)"
    if not course.profile.synthetic:
        try:
            return course.fetch("street-clip"), "real clip (manifest: street-clip)"
        except HRankError as e:
            print(f"street clip unavailable ({e}); using a synthetic clip", file=sys.stderr)
    return None, None


def video(course, clip=None) -> dict:
    """``results/video.json``: the finetuned pruned detector on ``clip``, else the street clip, else a synthetic one."""
    out_dir = course.run_dir / "video"
    out_dir.mkdir(parents=True, exist_ok=True)
    clip, source = (clip, "given clip") if clip is not None else street_clip(course)
    if clip is None:
        source = "synthetic clip"
        clip = video_demo.make_synthetic_video(out_dir / "synthetic.mp4", course.test_root(), seconds=2, fps=10)
    predictor = Predictor(load_model(course.model(PAPER)), course.device)
    info = video_demo.process_video(predictor, course.class_names(), clip, out_dir / "demo_pruned.mp4",
                                    max_frames=course.profile.video_max_frames, progress=course.progress)
    info = {"input": str(clip), "source": source, **info}
    course.save_json("video.json", info)
    return info


def settings(course) -> dict:
    """The profile as ``settings.json`` stores it (compress rates in the syntax users write)."""
    return dict(asdict(course.profile), compress_rate=format_compress_rate(course.profile.compress_rate),
                mb1_compress_rate=format_compress_rate(course.profile.mb1_compress_rate))


def rank_stability(course) -> pd.DataFrame:
    """Ranks of two disjoint sets of training images compared per layer (``rank_stability.csv``)."""
    p, model = course.profile, load_model(course.baseline("vgg16-ssd"))
    with course.timed("rank stability"):
        table = stability_table(model, course.trainval_dataset(model), p.stability_images, p.stability_few,
                                p.compress_rate, batch_size=min(p.rank_batch, 8), device=course.device,
                                progress=course.progress)
    return course.save_csv("rank_stability.csv", table)


def rank_comparison(course) -> pd.DataFrame:
    """Per layer, how many of the kept filters the student's and the published ranks share (empty without them)."""
    published = course.published_ranks()
    if published is None:
        print("no comparison: the published ranks are unavailable (see above), so yours stand in for them",
              file=sys.stderr)
        return pd.DataFrame()
    model = load_model(course.baseline("vgg16-ssd"))
    return pd.DataFrame(kept_agreement(model, course.profile.compress_rate, course.rank_dir(generate=True),
                                       published))


def sensitivity(course, scan: Callable = every_layer_and_rate) -> pd.DataFrame:
    """mAP of the baseline with one layer pruned at a time at the profile's rates, by ``scan`` (no finetuning)."""
    p = course.profile
    with course.timed("sensitivity"):
        table = layer_sensitivity(load_model(course.baseline("vgg16-ssd")), course.test_dataset(p.sensitivity_images),
                                  "hrank", course.rank_dir(), p.sensitivity_rates, p.sensitivity_layers,
                                  device=course.device, progress=course.progress, scan=scan)
    return course.save_csv("sensitivity.csv", table)


def criteria(course) -> pd.DataFrame:
    """hrank vs l1 vs random at the same compress rate, right after pruning and after the same finetune."""
    p = course.profile
    epochs = p.criteria_finetune_epochs  # 0: compared right after pruning
    finetune = (lambda _, crit: load_model(course.finetune_rate(epochs=epochs, criterion=crit))) if epochs else None
    with course.timed("criteria"):
        table = compare_criteria(load_model(course.baseline("vgg16-ssd")), course.test_dataset(), p.compress_rate,
                                 course.rank_dir(), finetune=finetune, device=course.device, seed=p.seed,
                                 progress=course.progress)
    return course.save_csv("criteria.csv", table)


def distillation(course) -> pd.DataFrame:
    """The pruned model finetuned with and without distillation from the unpruned one, same budget."""
    epochs, ds = course.profile.criteria_finetune_epochs or 1, course.test_dataset()
    with course.timed("distillation"):
        rows = [{"finetune": name, "epochs": epochs,
                 "mAP": quick_map(load_model(course.finetune_rate(epochs=epochs, distill=kd)), ds, course.device,
                                  progress=course.progress, desc=f"mAP {name}")}
                for name, kd in (("plain", False), ("distilled", True))]
    return course.save_csv("distillation.csv", pd.DataFrame(rows))


def fine_grained(course) -> pd.DataFrame:
    """The baseline, its HRank-pruned copy and the baseline magnitude-pruned to the same sparsity, compared."""
    p = course.profile
    model, pruned = load_model(course.baseline("vgg16-ssd")), load_model(course.prune())
    with course.timed("fine-grained"):
        table = compare_fine_grained(model, pruned, course.test_dataset(p.sensitivity_images), device=course.device,
                                     warmup=p.bench_warmup, runs=p.bench_runs, progress=course.progress)
    return course.save_csv("fine_grained.csv", table)


def dead_filters(course) -> pd.DataFrame:
    """Per layer: near-dead filters (average rank below 1) and how many of them L1 and HRank keep."""
    model = load_model(course.baseline("vgg16-ssd"))
    ranks = load_ranks(course.rank_dir(), model.cfg.name, model.plan.prunable)
    return course.save_csv("dead_filters.csv", dead_filter_table(model, course.profile.compress_rate, ranks))


def resume_lesson(course) -> pd.DataFrame:
    """Two short finetune epochs straight through and stopped then resumed: every step's loss of both."""
    p = course.profile
    images = min(p.resume_images, len(course.trainval_dataset()))
    cfg = course.train_config("vgg16-ssd", 2, p.finetune_lr, 1.0, course.work / "resume-lesson",
                              base_net=str(course.prune()), max_images=p.resume_images, validation_epochs=0,
                              batch_size=max(1, min(p.batch_size, images // 2)))  # two steps at least: a middle
    with course.timed("resume lesson"):
        table = stopped_and_resumed(cfg, course.work / "resume-lesson", 1, max(1, steps_per_epoch(cfg, images) // 2))
    return course.save_csv("resume.csv", table)
