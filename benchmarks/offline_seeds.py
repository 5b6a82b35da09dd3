"""The offline course's conclusions across seeds: mAP of the three models for several seeds, and their spread.

A seed changes everything random in the offline profile (synthetic images, initialisation, batch order, the
random criterion). Each seed runs the course's steps (``course --no_notebooks``) in its own work folder; the page
gives per seed the three mAPs and whether the course's conclusions hold (baseline VGG16-SSD well trained: mAP >= 0.8;
pruned with HRank and finetuned, within 0.05 of it; MobileNetV1-SSD below the pruned model), then the spread.

    python benchmarks/offline_seeds.py [--seeds 0,1,2] [--work work/seeds] [--runs runs/seeds] [--update_readme]
    python benchmarks/offline_seeds.py --from_csv --update_readme   # re-render the last run's table
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import benchkit  # beside this script
import pandas as pd

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
CHECKS = ("baseline well trained", "pruned close to baseline", "MB1 below pruned")
README_MARKERS = ("<!-- seeds:start -->", "<!-- seeds:end -->")


def run_seed(seed: int, work: Path, runs: Path) -> dict:
    start = time.perf_counter()
    course = Course(get_profile("offline", seed=seed), run_dir=runs / f"seed-{seed}", work_dir=work / f"seed-{seed}",
                    device="cpu", progress=False)
    run_steps(course, STEPS, log=lambda msg: print(f"[seed {seed}] {msg}", flush=True))
    maps = pd.read_csv(course.result("map.csv")).set_index("model")["mAP"]
    vgg, pruned, mb1 = (float(maps[k]) for k in ("vgg16-ssd", "vgg16-ssd-pruned", "mb1-ssd"))
    held = (vgg >= WELL_TRAINED, vgg - pruned <= CLOSE, mb1 < pruned)
    return {"seed": seed, **{k: float(maps[k]) for k in MODEL_KEYS},
            "minutes": round((time.perf_counter() - start) / 60, 1), **dict(zip(CHECKS, held))}


def render(table: pd.DataFrame) -> str:
    where = table["machine"].iloc[0] if "machine" in table else benchkit.machine()  # older CSVs: this machine
    spread = table[list(MODEL_KEYS)].agg(["mean", "std", "min", "max"]).T.rename(index=MODEL_TITLES)
    held = ", ".join(f"{c} in {int(table[c].sum())}/{len(table)} seeds" for c in CHECKS)
    return "\n".join([
        f"Offline profile over {len(table)} seeds, measured on {where} by `benchmarks/offline_seeds.py`.", "",
        markdown_table(table.drop(columns=["minutes", "machine"], errors="ignore").rename(columns=MODEL_TITLES),
                       floatfmt=".4f"), "", "Spread per model:", "",
        markdown_table(spread.rename_axis("model").reset_index(), floatfmt=".4f"), "",
        f"Conclusions held: {held} (well trained: mAP >= {WELL_TRAINED}; close: within {CLOSE} mAP)."]) + "\n"


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
        table = pd.DataFrame([run_seed(s, Path(args.work), Path(args.runs)) for s in seeds])
        table = table.assign(machine=benchkit.machine())
        table.to_csv(out.with_suffix(".csv"), index=False)
    text = render(table)
    out.with_suffix(".md").write_text("# The offline course across seeds\n\n" + text)
    print(text)
    if args.update_readme:
        replace_marked_block(repo_root() / "README.md", *README_MARKERS, text)
    return 0


if __name__ == "__main__":
    benchkit.run(main)
