"""The offline task across data seeds: each seed (images, initialisation, batch order) runs the course's steps in
its own folder and evaluates the paper-rate model before its finetune. The page gives the mAPs, whether the task
does what the course needs (:data:`CHECKS`), the pairs of models whose order changes with the seed, and the spread.

    python benchmarks/offline_seeds.py [--seeds 0,1,2] [--work W] [--runs R] [--update_readme] [--from_csv]
"""

import argparse
import itertools
from pathlib import Path

import benchkit  # beside this script
import numpy as np
import pandas as pd

from hrank_ssd.course.explain import LARGE_DROP
from hrank_ssd.course.models import MODEL_KEYS, MODEL_TITLES, ONE_BUDGET
from hrank_ssd.course.notebooks import run_steps
from hrank_ssd.course.profiles import get_profile
from hrank_ssd.course.report import replace_marked_block
from hrank_ssd.course.results import repo_root
from hrank_ssd.course.steps import Course
from hrank_ssd.measure.sensitivity import quick_map
from hrank_ssd.measure.tables import markdown_table
from hrank_ssd.nets.models import load_model

HERE, STEPS = Path(__file__).resolve().parent, ("data", "train", "ranks", "prune", "finetune", "evaluate")
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
    course = Course(get_profile("offline", seed=seed), run_dir=runs / f"seed-{seed}", work_dir=work / f"seed-{seed}",
                    device="cpu", progress=False)
    run_steps(course, STEPS, log=lambda msg: print(f"[seed {seed}] {msg}", flush=True))
    m = pd.read_csv(course.result("map.csv")).set_index("model")["mAP"].astype(float)[list(MODEL_KEYS)].to_dict()
    m[BEFORE] = quick_map(load_model(course.prune()), course.test_dataset())
    return {"seed": seed, **m, **checks(m)}


def swaps(table: pd.DataFrame) -> list:
    """``(model, model, largest gap, tie)`` for each pair of compared models whose order by mAP differs between seeds;
    a tie: the two pruned within one MAC budget (``ONE_BUDGET``), less than a clear difference apart."""
    gaps = {(a, b): table[a] - table[b] for a, b in itertools.combinations(MODEL_KEYS, 2)}
    found = [(a, b, float(g.abs().max())) for (a, b), g in gaps.items() if np.sign(g).nunique() > 1]
    return [(a, b, gap, {a, b} == set(ONE_BUDGET) and round(gap, 4) <= LARGE_DROP) for a, b, gap in found]


def render(table: pd.DataFrame, dated: bool = True) -> str:
    """The page; for the README (reference text) without the date that ends ``benchkit.machine``."""
    keys, where = [*MODEL_KEYS, BEFORE], table["machine"].iloc[0]
    where = where if dated else where.rsplit(", ", 1)[0]
    spread = table[keys].agg(["mean", "std", "min", "max"]).T.rename(index=TITLES).rename_axis("model").reset_index()
    held = ", ".join(f"{c} in {int(table[c].sum())}/{len(table)} seeds" for c in CHECKS)
    named = "; ".join(f"{TITLES[a]} and {TITLES[b]} (at most {g:.4f} apart)" for a, b, g, t in swaps(table) if not t)
    tied = "".join(f" ({TITLES[a]} and {TITLES[b]}, pruned within one MAC budget, take one place: at most {g:.4f} "
                   f"apart, within the {LARGE_DROP} mAP the course takes as a clear difference, a tie)"
                   for a, b, g, t in swaps(table) if t)
    return "\n".join([
        f"Offline profile over {len(table)} data seeds, measured on {where} by `benchmarks/offline_seeds.py`.", "",
        markdown_table(table[["seed", *keys, *CHECKS]].rename(columns=TITLES), floatfmt=".4f"), "",
        "Spread per model:", "", markdown_table(spread, floatfmt=".4f"), "",
        f"Held: {held} (baseline between {BASELINE[0]} and {BASELINE[1]}; pruning costs at least {CLEAR} mAP before "
        f"finetuning; the finetune recovers at least {RECOVERED:.0%} of it). The six models' order by mAP is the same "
        f"in every seed{tied}" + (f" but for these, which swap places: {named}." if named else ".")]) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--work", default=str(repo_root() / "work" / "seeds"))
    p.add_argument("--runs", default=str(repo_root() / "runs" / "seeds"))
    p.add_argument("--out", default=str(HERE / "offline_seeds"), help="writes OUT.md and OUT.csv")
    p.add_argument("--update_readme", action="store_true", help="refresh README.md's seeds block")
    p.add_argument("--from_csv", action="store_true", help="re-render OUT.csv of an earlier run, train nothing")
    args = p.parse_args(argv)
    out, seeds = Path(args.out), [int(s) for s in args.seeds.split(",") if s.strip()]
    if not args.from_csv:  # else re-render the CSV of an earlier run
        table = pd.DataFrame([run_seed(s, Path(args.work), Path(args.runs)) for s in seeds])
        table.assign(machine=benchkit.machine()).to_csv(out.with_suffix(".csv"), index=False)
    table = pd.read_csv(out.with_suffix(".csv"))
    text = render(table)
    out.with_suffix(".md").write_text("# The offline course across seeds\n\n" + text)
    print(text)
    if args.update_readme:
        replace_marked_block(repo_root() / "README.md", *README_MARKERS, render(table, dated=False))
    return 0


if __name__ == "__main__":
    benchkit.run(main)
