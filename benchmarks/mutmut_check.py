"""A tool-made mutation check (mutmut) of the four modules the results rest on: evaluation, pruning, ranks, compress.

mutmut writes every small change it can make to those modules (operators, numbers, strings, arguments dropped
or set to None...) and runs, for each, the tests that call the mutated function. It works in a scratch copy of the project (mutmut needs a ``src/`` layout: the
copy's ``lib/`` is renamed), so the checkout is never touched. A survivor is either explained below (an
equivalent mutant, or a change users cannot observe) or counted as *unexplained*: the exit code is that count.

    pip install mutmut==3.8.1        # the `mutation` extra
    python benchmarks/mutmut_check.py [--tests_rev REV] [--workers 2] [--out benchmarks/mutmut_check.md]

``--tests_rev`` runs the mutants against the tests of another commit (the report's "before" column).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from hrank_ssd.cli.main import guarded
from hrank_ssd.errors import HRankError

ROOT = Path(__file__).resolve().parents[1]
MODULES = {"evaluation": "measure/evaluation.py", "pruning": "hrank/pruning.py", "ranks": "hrank/ranks.py",
           "compress": "nets/compress.py"}
TESTS = ["tests/test_evaluation.py", "tests/test_end_to_end.py", "tests/test_pruning.py", "tests/test_ranks.py",
         "tests/test_compress.py"]  # the tests that guard those modules
COPIED = ["lib", "tests", "benchmarks", "data_scripts", "notebooks", "docs", "README.md", "Makefile",
          "requirements.txt", "pyproject.toml"]
KILLED = {"killed", "timeout", "segfault"}  # a timeout or crash is a mutant the tests noticed

NUMPY_WHY = ("equivalent: a dtype, shape or keyword that is already the input's or the default (lists of ints are "
             "int64, python floats float64, astype(None) is float64, numpy reads reshape(-2) and reshape(None) of "
             "these arrays like -1, load_state_dict is strict by default, 0/0 is 'invalid' not 'divide', tensors "
             "are made on the CPU); every array's values are asserted exactly")
SPEED_ONLY = ("speed only: how the maps are split into SVD calls and over threads, not what they give "
              "(test_batched_equals_one_at_a_time compares the ranks at 1 and 3 workers with one call per map)")
CUDA_ONLY = ("CPU-only equivalent: the predictor's device only decides whether to synchronise CUDA around each "
             "timed prediction (tests/test_cuda.py runs it on a GPU)")
NO_OBJECTS = "equivalent: a class without objects has no box to match, so its difficult flags are never read"
PROGRESS_WHY = "progress bar: its name, unit or default (shown to people, not read by code)"

# Survivors users cannot observe, by function and the mutated line (mutant numbers change with the code; these
# do not). Each says why no test can or should kill it.
EXPLAINED = {
    ("compute_ap", "for t in np.arange(0.0, 2.1, 0.1):"):
        "equivalent: recall never exceeds 1, so thresholds above 1 add 0 to the sum of p/11",
    ("compute_ap", "precision = np.concatenate([[1.0], precision, [0.0]])"):
        "equivalent: the area sums precision[i + 1] where recall changes, never the leading sentinel",
    ("compute_ap", "recall = np.concatenate([[0.0], recall, [2.0]])"):
        "equivalent: the last segment is weighted by the trailing precision sentinel, 0",
    ("compute_ap", "for i in range(len(precision) - 2, 0, -1):"):
        "equivalent: the envelope's last step is max(p[-2], 0) = p[-2]",
    ("compute_ap", "for i in range(len(precision) - 1, 1, -1):"):
        "equivalent: the envelope's first entry is the leading sentinel, never summed",
    ("compute_ap", "changes = np.where(recall[1:] != recall[:+1])[0]"):
        "equivalent: recall only grows, so steps where it does not change have zero width either way",
    ("_iou", "return inter / (area_a + area_b - inter - _EPS)"):
        "equivalent within float32: +-1e-5 on a union of at least one pixel moves no IoU across a threshold "
        "in any test, nor (by more than 1e-5 relative) anywhere",
    ("evaluate_class", "ap = compute_ap(precision, recall, use_2007_metric) if (len(tp)) or True else 0.0"):
        "equivalent: compute_ap of no detections is 0 under both metrics",
    ("evaluate_detections", "npos, gt_boxes, difficult = ground_truth if (ground_truth is not None) and False "
                            "else group_annotations(dataset)"):
        "equivalent: the ground truth passed in is the dataset's, given only to save reading it twice",
    ("save_table", "atomic_write_text(path, table[TABLE_COLUMNS].to_csv(index=None))"):
        "equivalent: pandas reads index=None as no index column (the CSV's header is asserted)",
    ("select_filters", 'order = np.argsort(scores, kind="STABLE")'):
        "equivalent: numpy reads the sort kind without regard to case",
    ("round_keep", "if not round_to or round_to < 1:"):
        "equivalent: rounding up to a multiple of 1 leaves the count as it is",
    ("apply_kept", "if in_layer is not None and t.dim() > 2:"):
        "equivalent: every tensor with an input side in these nets is a 4-D conv weight",
    ("apply_kept", "if in_layer is not None and t.dim() >= 3:"):
        "equivalent: every tensor with an input side in these nets is a 4-D conv weight",
    ("apply_kept", "pruned.load_state_dict(new_state, strict=None)"):
        "equivalent: the new state holds exactly the rebuilt model's keys, so strict and lenient loads agree",
    ("apply_kept", "pruned.load_state_dict(new_state, strict=False)"):
        "equivalent: the new state holds exactly the rebuilt model's keys, so strict and lenient loads agree",
    ("apply_kept", "return pruned.to(None).train(model.training)"):
        "CPU-only equivalent: a new model is built on the CPU; tests/test_cuda.py prunes nothing on a GPU",
    ("_on_threads", "torch.set_num_threads(2)"):
        "speed only: the threads' OpenMP teams (no test times them)",
    ("_on_threads", "with ThreadPoolExecutor(None) as pool:"): SPEED_ONLY,
    ("batched_ranks", "ranks = torch.zeros(flat.size(0), device=None)"):
        "CPU-only equivalent: the ranks are made on the maps' device (tests/test_cuda.py has no rank case)",
    ("batched_ranks", "flat = maps.detach().float().reshape(-1, *maps.shape[+2:])"):
        "equivalent: the maps are (B, C, H, W), so shape[2:] is shape[-2:]",
    ("rank_bounds", "flat = maps.detach().float().reshape(-1, *maps.shape[+2:])"):
        "equivalent: the maps are (B, C, H, W), so shape[2:] is shape[-2:]",
    ("rank_bounds", "tol = max(flat.shape[+2:]) * torch.finfo(flat.dtype).eps * s[:, :1]"):
        "equivalent: flat is (N, H, W), so shape[2:] is (W,) and max(W) vs max(H, W) only differs for tall maps, "
        "where the borderline band is a factor 2 wide anyway",
    ("compute_ranks", "acc.add(images.to(None))"): "CPU-only equivalent: the images are already on the CPU",
    ("compute_ranks", "model = model.to(None).eval()"): "CPU-only equivalent: the model is already on the CPU",
    ("evaluate_detections", "r = evaluate_class(npos.get(c, 0), gt_boxes.get(c, {}), difficult.get(c, None),"):
        NO_OBJECTS,
    ("evaluate_detections", "r = evaluate_class(npos.get(c, 0), gt_boxes.get(c, {}), difficult.get(c, ),"):
        NO_OBJECTS,
    ("apply_kept", "pruned.load_state_dict(new_state, )"): NUMPY_WHY,
    ("batched_ranks", "ranks = torch.zeros(flat.size(0), )"): NUMPY_WHY,
    ("evaluate_class", 'with np.errstate(invalid="ignore", divide=None):'): NUMPY_WHY,
    ("evaluate_class", 'with np.errstate(invalid="ignore", ):'): NUMPY_WHY,
    ("_iou", "wh_a = np.clip(box[2:] - box[:2], None, None)"):
        "equivalent: a box with inverted corners has no intersection with anything, so its IoU is 0 either way",
    ("_iou", "wh_b = np.clip(gts[:, 2:] - gts[:, :2], None, None)"):
        "equivalent: a box with inverted corners has no intersection with anything, so its IoU is 0 either way",
    ("_iou", "wh_b = np.clip(gts[:, 2:] - gts[:, :2], np.float32(1), None)"):
        "equivalent for VOC: ground-truth boxes are whole pixels, so a width is 0 or at least 1",
    **{("predict_dataset", line): CUDA_ONLY for line in [
        'device = getattr(None, "device", "cpu")', 'device = getattr(predictor, "device", None)',
        'device = getattr(predictor, "device", )', 'device = getattr(predictor, "XXdeviceXX", "cpu")',
        'device = getattr(predictor, "DEVICE", "cpu")', 'device = getattr(predictor, "device", "XXcpuXX")',
        'device = getattr(predictor, "device", "CPU")']},
}
BY_FUNCTION = {  # survivors of a function that only chooses how to split work
    "batched_ranks": (re.compile(r"chunk: int = |workers|step = |pieces"), SPEED_ONLY),
}
# Whole classes of survivors, by what the mutated line does (checked in this order). A dropped argument is only
# explained here for array constructors (np.asarray, torch.as_tensor); anywhere else it needs its own entry above.
CLASSES = [
    (re.compile(r"tqdm\(|desc: str = |desc=|unit=|progress: bool = "), PROGRESS_WHY),
    (re.compile(r"dtype=None|\.astype\(None\)|reshape\(-2|reshape\(None\)|kind=None|"
                r"(np\.asarray|torch\.as_tensor)\([^()]*, \)"), NUMPY_WHY),
]

def run(cmd, cwd, env=None, check=True) -> str:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if check and done.returncode != 0:
        raise HRankError(f"{' '.join(map(str, cmd))} failed: {(done.stderr or done.stdout).strip()[-300:]}")
    return done.stdout


def make_scratch(scratch: Path, tests_rev: str | None) -> None:
    """A copy of the project with ``lib/`` as ``src/`` and mutmut's settings appended to pyproject.toml."""
    for name in COPIED:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, scratch / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        elif src.is_file():
            shutil.copy2(src, scratch / name)
    if tests_rev:
        shutil.rmtree(scratch / "tests")
        archive = subprocess.run(["git", "archive", tests_rev, "tests"], cwd=ROOT, capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(scratch)], input=archive.stdout, check=True)
    (scratch / "lib").rename(scratch / "src")
    shared = ROOT.parent / "shared"
    if shared.is_dir():  # conftest looks beside the checkout (here: beside mutants/)
        (scratch / "shared").symlink_to(shared)
    settings = {  # TOML arrays of strings are written like JSON ones
        "source_paths": ["src"], "only_mutate": [f"src/hrank_ssd/{f}" for f in MODULES.values()],
        "pytest_add_cli_args_test_selection": TESTS, "pytest_add_cli_args": ["-p", "no:cacheprovider", "-p", "no:xdist"],
        "also_copy": [n for n in COPIED if n not in ("lib", "tests")],
        "process_isolation": "forkserver",  # torch's OpenMP pool is not fork-safe: forked workers hang, not die
        "timeout_multiplier": 8.0, "timeout_constant": 5.0}
    with open(scratch / "pyproject.toml", "a") as f:
        f.write("\n[tool.mutmut]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in settings.items()))


def parse_results(text: str) -> dict:
    """``mutmut results --all true`` lines ``name: status`` -> {name: status}."""
    out = {}
    for line in text.splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep and name.startswith("hrank_ssd."):
            out[name] = status.strip()
    return out


def module_of(name: str) -> str:
    return next(m for m, f in MODULES.items() if name.startswith("hrank_ssd." + f[:-3].replace("/", ".") + "."))


def function_of(name: str) -> str:
    """``hrank_ssd.hrank.ranks.xǁRankAccumulatorǁ_hook__mutmut_3`` -> ``RankAccumulator._hook``."""
    mangled = name.rsplit(".", 1)[1].split("__mutmut_")[0]
    return mangled[2:] if mangled.startswith("x_") else ".".join(p for p in mangled.split("ǁ")[1:] if p)


def mutated_line(diff: str) -> str:
    """The first added line of a mutant's diff, stripped (what the mutant changed the code to)."""
    for line in diff.splitlines():
        if line.startswith("+") and not line.startswith("+++"):
            return re.sub(r"\s+# [^'\"]*$", "", line[1:]).strip()  # without a trailing comment
    return ""


def explain(function: str, line: str) -> str:
    """Why a survivor may survive, or '' when nothing explains it."""
    if (function, line) in EXPLAINED:
        return EXPLAINED[(function, line)]
    if function in BY_FUNCTION and BY_FUNCTION[function][0].search(line):
        return BY_FUNCTION[function][1]
    return next((why for pattern, why in CLASSES if pattern.search(line)), "")


def run_mutmut(scratch: Path, workers: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    mutmut = [sys.executable, "-m", "mutmut"]
    with open(scratch / "mutmut-run.log", "w") as log:
        subprocess.run([*mutmut, "run", "--max-children", str(workers)], cwd=scratch, env=env, stdout=log,
                       stderr=subprocess.STDOUT)
    results = parse_results(run([*mutmut, "results", "--all", "true"], scratch, env))
    if not results or all(s == "checked" for s in results.values()):  # "checked": never run
        raise HRankError(f"mutmut ran no mutant: see {scratch / 'mutmut-run.log'} (rerun with --keep)")
    diffs = {n: run([*mutmut, "show", n], scratch, env, check=False) for n, s in results.items() if s not in KILLED}
    return {"results": results, "diffs": diffs}


def summary(results: dict) -> dict:
    """Per module: mutants, killed (incl. timeouts), survived, no tests."""
    table = {m: Counter() for m in MODULES}
    for name, status in results.items():
        row = table[module_of(name)]
        row["mutants"] += 1
        row["killed" if status in KILLED else "no tests" if status == "no tests" else "survived"] += 1
        row["timeout"] += status == "timeout"
    return table


def report(now: dict, before: dict | None, seconds: float, tests_rev: str | None, version: str) -> tuple:
    table, rows, unexplained = summary(now["results"]), [], 0
    for name, status in sorted(now["results"].items()):
        if status in KILLED:
            continue
        function, line = function_of(name), mutated_line(now["diffs"].get(name, ""))
        why = explain(function, line)
        unexplained += not why
        rows.append(f"| {module_of(name)} | `{function}` | {status} | `{line[:110].replace('|', chr(92) + '|')}` | "
                    f"{why or '**unexplained**'} |")
    head = ["# Mutation check by mutmut", "",
            f"`python benchmarks/mutmut_check.py` ({time.strftime('%Y-%m-%d')}, mutmut {version}, "
            f"{platform.machine()}, {seconds / 60:.0f} min): every mutant mutmut makes of `evaluation`, `pruning`, `ranks` and `compress`, "
            f"each run against the tests that call its function among {', '.join(TESTS)}. A timeout counts as "
            "killed (the tests noticed).",
            "", "| module | mutants | killed now (by a timeout) | survived now | no test calls it |"
            + (" killed before |" if before else ""), "|---|---:|---:|---:|---:|" + ("---:|" if before else "")]
    old = summary(before["results"]) if before else {}
    for m, row in table.items():
        head.append(f"| {m} | {row['mutants']} | {row['killed']} ({row['timeout']}) | {row['survived']} | "
                    f"{row['no tests']} |"
                    + (f" {old[m]['killed']} of {old[m]['mutants']} |" if before else ""))
    if before:
        head += ["", f"*Before*: the same mutants against the tests of `{tests_rev}` (before the tests this check led to)."]
    head += ["", f"## Survivors ({len(rows)}, {unexplained} unexplained)", "",
             "| module | function | status | the mutated line | why it may survive |", "|---|---|---|---|---|"]
    return "\n".join(head + rows) + "\n", unexplained


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tests_rev", default=None, help="also run the mutants against the tests of this commit")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "mutmut_check.md"))
    p.add_argument("--keep", action="store_true", help="keep the scratch copies (their mutants/ folders)")
    args = p.parse_args(argv)
    if run([sys.executable, "-m", "pip", "show", "mutmut"], ROOT, check=False) == "":
        raise HRankError("mutmut is not installed: pip install mutmut==3.8.1 (or pip install -e .[mutation])")
    if args.tests_rev and shutil.which("git") is None:
        raise HRankError("--tests_rev needs git on the PATH to read that commit's tests")
    start, outcomes = time.perf_counter(), {}
    for label, rev in ([("before", args.tests_rev)] if args.tests_rev else []) + [("now", None)]:
        scratch = Path(tempfile.mkdtemp(prefix=f"mutmut-{label}-"))
        make_scratch(scratch, rev)
        print(f"{label}: mutmut run in {scratch}", flush=True)
        outcomes[label] = run_mutmut(scratch, args.workers)
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    version = run([sys.executable, "-m", "mutmut", "--version"], ROOT).split()[-1]
    text, unexplained = report(outcomes["now"], outcomes.get("before"), time.perf_counter() - start, args.tests_rev,
                               version)
    Path(args.out).write_text(text)
    print(text.split("## Survivors")[0])
    print(f"{unexplained} unexplained survivors; report: {args.out}")
    return min(unexplained, 99)


if __name__ == "__main__":
    sys.exit(guarded(main))
