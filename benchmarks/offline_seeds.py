"""The offline course's conclusions across seeds: mAP of the three models for several seeds, and their spread.

Each seed changes everything random in the offline profile: the synthetic images, the initialisation, the
batch order, the random criterion. For each seed this runs the course's steps (data, train, ranks, prune,
finetune, evaluate; the same calls as the notebooks, ``course --no_notebooks``) in its own work folder, then
writes ``benchmarks/offline_seeds.md`` (and ``.csv``): per seed the three mAPs and whether the conclusions
hold, then mean, standard deviation, min and max per model, with the machine they were measured on.

    python benchmarks/offline_seeds.py [--seeds 0,1,2] [--work work/seeds] [--runs runs/seeds] [--update_readme]
    python benchmarks/offline_seeds.py --from_csv --update_readme   # re-render the last run's table

The conclusions checked (those the course teaches): the baseline VGG16-SSD is well trained (mAP >= 0.8 on the
synthetic test set), pruning with HRank then finetuning keeps it close (within 0.05 mAP), and MobileNetV1-SSD
stays below the pruned VGG16-SSD.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

from hrank_ssd.cli.main import guarded
from hrank_ssd.course.models import MODEL_KEYS, MODEL_TITLES
from hrank_ssd.course.notebooks import run_steps
from hrank_ssd.course.profiles import get_profile
from hrank_ssd.course.report import replace_marked_block
from hrank_ssd.course.results import repo_root
from hrank_ssd.course.steps import Course
from hrank_ssd.measure.tables import markdown_table

HERE = Path(__file__).resolve().parent
STEPS = ("data", "train", "ranks", "prune", "finetune", "evaluate")
WELL_TRAINED, CLOSE = 0.8, 0.05
README_MARKERS = ("<!-- seeds:start -->", "<!-- seeds:end -->")


def run_seed(seed: int, work: Path, runs: Path) -> dict:
    start = time.perf_counter()
    course = Course(get_profile("offline", seed=seed), run_dir=runs / f"seed-{seed}", work_dir=work / f"seed-{seed}",
                    device="cpu", progress=False)
    run_steps(course, STEPS, log=lambda msg: print(f"[seed {seed}] {msg}", flush=True))
    maps = pd.read_csv(course.result("map.csv")).set_index("model")["mAP"]
    row = {"seed": seed, **{k: float(maps[k]) for k in MODEL_KEYS},
           "minutes": round((time.perf_counter() - start) / 60, 1)}
    row["baseline well trained"] = row["vgg16-ssd"] >= WELL_TRAINED
    row["pruned close to baseline"] = row["vgg16-ssd"] - row["vgg16-ssd-pruned"] <= CLOSE
    row["MB1 below pruned"] = row["mb1-ssd"] < row["vgg16-ssd-pruned"]
    return row


def spread(table: pd.DataFrame) -> pd.DataFrame:
    cols = list(MODEL_KEYS)
    out = table[cols].agg(["mean", "std", "min", "max"]).T
    out.index = [MODEL_TITLES[k] for k in out.index]
    return out.rename_axis("model").reset_index()


def machine() -> str:
    import torch

    from hrank_ssd.measure.bench import cpu_flags, cpu_model

    cpu = cpu_flags()
    flags = "AVX-512" if "avx512f" in cpu else "AVX2" if "avx2" in cpu else "no AVX2 seen"
    return f"{cpu_model()} ({flags}), {torch.get_num_threads()} threads, torch {torch.__version__}, " \
           f"{time.strftime('%Y-%m-%d')}"


def render(table: pd.DataFrame) -> str:
    checks = ("baseline well trained", "pruned close to baseline", "MB1 below pruned")
    where = table["machine"].iloc[0] if "machine" in table else machine()  # as measured (older CSVs: this one)
    shown = table.drop(columns=["minutes", "machine"], errors="ignore").rename(columns=MODEL_TITLES)
    lines = [f"Offline profile over {len(table)} seeds, measured on {where} by `benchmarks/offline_seeds.py`.",
             "", markdown_table(shown, floatfmt=".4f"), "", "Spread per model:", "",
             markdown_table(spread(table), floatfmt=".4f"), ""]
    held = {c: int(table[c].sum()) for c in checks}
    lines.append("Conclusions held: " + ", ".join(f"{c} in {n}/{len(table)} seeds" for c, n in held.items())
                 + f" (well trained: mAP >= {WELL_TRAINED}; close: within {CLOSE} mAP).")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--work", default=str(repo_root() / "work" / "seeds"))
    p.add_argument("--runs", default=str(repo_root() / "runs" / "seeds"))
    p.add_argument("--out", default=str(HERE / "offline_seeds"), help="writes OUT.md and OUT.csv")
    p.add_argument("--update_readme", action="store_true", help="refresh README.md's seeds block")
    p.add_argument("--from_csv", action="store_true", help="re-render OUT.csv of an earlier run, train nothing")
    args = p.parse_args(argv)
    out = Path(args.out)
    if args.from_csv:
        table = pd.read_csv(out.with_suffix(".csv"))
    else:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
        table = pd.DataFrame([run_seed(s, Path(args.work), Path(args.runs)) for s in seeds]).assign(machine=machine())
        table.to_csv(out.with_suffix(".csv"), index=False)
    text = render(table)
    out.with_suffix(".md").write_text("# The offline course across seeds\n\n" + text)
    print(text)
    if args.update_readme:
        replace_marked_block(repo_root() / "README.md", *README_MARKERS, text)
    return 0


if __name__ == "__main__":
    sys.exit(guarded(main))
