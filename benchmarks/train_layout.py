"""Training step time in the two memory layouts: NCHW (PyTorch's default) against channels-last (``--channels_last``).

Each case trains one short epoch with ``hrank_ssd.train.trainer.train`` (the course's code path: data loading,
loss, backward, optimizer step) in each layout, layouts alternating round by round, on synthetic VOC data. A step's
time is the interval between two consecutive steps (the first step, with its warm-up, is never counted); each
layout's figure is the median over all rounds.

    python benchmarks/train_layout.py [--threads 2] [--rounds 3] [--quick] [--out benchmarks/train_layout.md]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from statistics import median

import benchkit  # beside this script
import pandas as pd

from hrank_ssd.course.profiles import get_profile
from hrank_ssd.data.synthetic import make_synthetic_voc
from hrank_ssd.data.voc import read_labels
from hrank_ssd.errors import HRankError
from hrank_ssd.measure import bench
from hrank_ssd.measure.tables import markdown_table
from hrank_ssd.nets.compress import PRUNED_RATE
from hrank_ssd.nets.models import build_model, save_model
from hrank_ssd.train.config import TrainConfig
from hrank_ssd.train.trainer import Hooks, train

HERE = Path(__file__).resolve().parent
LAYOUTS = {"NCHW": False, "channels-last": True}


def cases(quick: bool):
    """(label, net, width, batch size, steps per run, pruned at the paper rate?): the offline course's three
    trained shapes, and the full-width VGG16-SSD users train on Colab."""
    p = get_profile("offline")
    if quick:
        return [("VGG16-SSD, course width (baseline training)", "vgg16-ssd", p.vgg_width, 2, 3, False)]
    return [("VGG16-SSD, course width (baseline training)", "vgg16-ssd", p.vgg_width, p.batch_size, 8, False),
            ("VGG16-SSD, course width, paper rate (finetunes)", "vgg16-ssd", p.vgg_width, p.batch_size, 8, True),
            ("MobileNetV1-SSD, course width", "mb1-ssd", p.mb1_width, p.batch_size, 8, False),
            ("VGG16-SSD, full width", "vgg16-ssd", 1.0, 2, 4, False)]


def step_times(root: Path, work: Path, net: str, width: float, batch: int, steps: int, pruned: bool,
               channels_last: bool) -> list:
    """The step intervals of one fresh epoch of ``steps + 1`` steps."""
    extra = {}
    if pruned:
        base = work / f"{net}-{width}.pth"
        if not base.is_file():
            save_model(build_model(net, len(read_labels(root / "labels.txt")), width=width), base)
        extra = dict(base_net=str(base), compress_rate=list(PRUNED_RATE), criterion="l1")
    marks, clock = [], Hooks()  # the perf_counter time after each optimizer step
    clock.after_step = lambda epoch, step, state: marks.append(time.perf_counter())
    train(TrainConfig(datasets=[str(root)], validation_dataset=str(root), net=net, width=width, batch_size=batch,
                      num_epochs=1, max_images=batch * (steps + 1), lr=2e-4, optimizer="adam", seed=0,
                      validation_epochs=0, checkpoint_folder=str(work / "ck"), device="cpu", progress=False,
                      channels_last=channels_last, **extra), hooks=clock)
    return [b - a for a, b in zip(marks, marks[1:])]


def measure(rounds: int, quick: bool, work: Path) -> pd.DataFrame:
    root = make_synthetic_voc(work / "data", num_train=64, num_test=8, image_size=300, seed=0)
    rows = []
    for label, net, width, batch, steps, pruned in cases(quick):
        seconds = {name: [] for name in LAYOUTS}
        for r in range(rounds):
            for name in list(LAYOUTS)[::1 if r % 2 == 0 else -1]:
                seconds[name] += step_times(root, work, net, width, batch, steps, pruned, LAYOUTS[name])
        nchw, nhwc = (1000 * median(seconds[name]) for name in LAYOUTS)
        rows.append({"case": label, "batch": batch, "steps timed": len(seconds["NCHW"]), "NCHW ms/step": nchw,
                     "channels-last ms/step": nhwc, "speed-up": nchw / nhwc})
        benchkit.log(f"{label}: {nchw:.0f} vs {nhwc:.0f} ms/step ({nchw / nhwc:.2f}x)")
    return pd.DataFrame(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="one small case, one round (a smoke run)")
    ap.add_argument("--out", default=str(HERE / "train_layout.md"), help="OUT.md; OUT.csv beside it")
    args = ap.parse_args(argv)
    out = Path(args.out)
    if not out.parent.is_dir():
        raise HRankError(f"--out {out}: no folder {out.parent}; create it or write elsewhere")
    with tempfile.TemporaryDirectory() as tmp, bench.num_threads(args.threads):
        table = measure(1 if args.quick else args.rounds, args.quick, Path(tmp))
    env = bench.environment("cpu", args.threads)
    out.write_text("\n".join([
        "# Training step time: NCHW against channels-last", "",
        f"Generated by `{benchkit.command('train_layout.py', argv)}` on {env['date']}: {env['cpu']}, "
        f"{env['threads']} threads, torch {env['torch']}. Median interval between consecutive optimizer steps of real "
        "`train()` runs (data loading included), layouts alternated round by round; synthetic data. Only the ratio "
        "of one row is meaningful: absolute times move with the machine and its load.", "",
        markdown_table(table, formats={"speed-up": ".2f", "NCHW ms/step": ".0f", "channels-last ms/step": ".0f"}), "",
        "The course trains channels-last (`Profile.channels_last`); the CLI's `train --channels_last` does the same. "
        "The weights the run writes are in the usual NCHW layout either way, and validation and evaluation run "
        "in it. docs/training.md says when the layout pays and when not.", ""]))
    table.to_csv(out.with_suffix(".csv"), index=False)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    benchkit.run(main)
