"""The offline course's conclusions across data seeds: mAP of the compared models per seed, and their spread.

A seed changes everything random in the offline profile (synthetic images, initialisation, batch order, the
random criterion). Each seed runs the course's steps (``course --no_notebooks``) in its own work folder, and also
evaluates the paper-rate model before its finetune. The page gives per seed the mAPs and whether the offline task
does what the course needs: the baseline VGG16-SSD between 0.60 and 0.85 (neither saturated nor failed); pruning
at the paper rate clearly lower before finetuning (at least 0.05); the finetune recovering most of that loss (at
least half); the order VGG16-SSD > pruned > MobileNetV1-SSD, as published. Then the spread per model.

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
from hrank_ssd.measure.sensitivity import quick_map
from hrank_ssd.measure.tables import markdown_table
from hrank_ssd.nets.models import load_model

HERE = Path(__file__).resolve().parent
STEPS = ("data", "train", "ranks", "prune", "finetune", "evaluate")
BEFORE = "vgg16-ssd-pruned before finetune"
TITLES = {**MODEL_TITLES, BEFORE: "paper rate before finetune"}
BASELINE, CLEAR, RECOVERED = (0.60, 0.85), 0.05, 0.5
CHECKS = ("baseline in range", "pruning costs mAP", "finetune recovers most", "VGG > pruned > MB1")
README_MARKERS = ("<!-- seeds:start -->", "<!-- seeds:end -->")


def checks(m: dict) -> dict:
    """Whether one seed's mAPs ``m`` (model key -> mAP) do what the course needs (:data:`CHECKS`)."""
    vgg, pruned, before, mb1 = (m[k] for k in ("vgg16-ssd", "vgg16-ssd-pruned", BEFORE, "mb1-ssd"))
    return dict(zip(CHECKS, (BASELINE[0] <= vgg <= BASELINE[1], vgg - before >= CLEAR,
                             pruned - before >= RECOVERED * (vgg - before), vgg > pruned > mb1)))


def run_seed(seed: int, work: Path, runs: Path) -> dict:
    start = time.perf_counter()
    course = Course(get_profile("offline", seed=seed), run_dir=runs / f"seed-{seed}", work_dir=work / f"seed-{seed}",
                    device="cpu", progress=False)
    run_steps(course, STEPS, log=lambda msg: print(f"[seed {seed}] {msg}", flush=True))
    maps = pd.read_csv(course.result("map.csv")).set_index("model")["mAP"]
    m = {k: float(maps[k]) for k in MODEL_KEYS}
    m[BEFORE] = quick_map(load_model(course.prune()), course.test_dataset())
    order = " > ".join(MODEL_TITLES[k] for k in sorted(MODEL_KEYS, key=lambda k: -m[k]))
    return {"seed": seed, **m, "order": order, "minutes": round((time.perf_counter() - start) / 60, 1), **checks(m)}


def render(table: pd.DataFrame) -> str:
    keys = [k for k in (*MODEL_KEYS, BEFORE) if k in table]
    spread = table[keys].agg(["mean", "std", "min", "max"]).T.rename(index=TITLES)
    held = ", ".join(f"{c} in {int(table[c].sum())}/{len(table)} seeds" for c in CHECKS if c in table)
    orders = table["order"].nunique() if "order" in table else 0
    return "\n".join([
        f"Offline profile over {len(table)} data seeds, measured on {table['machine'].iloc[0]} by "
        "`benchmarks/offline_seeds.py`.", "",
        markdown_table(table[["seed", *keys, *[c for c in CHECKS if c in table]]].rename(columns=TITLES),
                       floatfmt=".4f"), "", "Spread per model:", "",
        markdown_table(spread.rename_axis("model").reset_index(), floatfmt=".4f"), "",
        f"Held: {held} (baseline between {BASELINE[0]} and {BASELINE[1]}; pruning costs at least {CLEAR} mAP before "
        f"finetuning; the finetune recovers at least {RECOVERED:.0%} of it). The six models' full order by mAP is "
        + ("the same in every seed" if orders == 1 else f"{orders} different orders over the seeds (close models "
           "swap places; the table above has each seed's mAPs)") + "."]) + "\n"


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
