"""A mutation check (mutmut) of the four modules the results rest on: evaluation, pruning, ranks, compress.

For every small change mutmut makes to them it runs the tests that call the mutated function, in a scratch copy
(``lib/`` renamed ``src/``, as mutmut needs). Each survivor is explained or counted as *unexplained*, the exit
status; ``--tests_rev REV`` also runs the mutants against that commit's tests (the page's "before" column).

    pip install -e .[mutation]; python benchmarks/mutmut_check.py [--tests_rev REV] [--workers 2] [--out PAGE]
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

import benchkit  # beside this script

from hrank_ssd.errors import HRankError

ROOT = Path(__file__).resolve().parents[1]
MODULES = {"evaluation": "measure/evaluation.py", "pruning": "hrank/pruning.py", "ranks": "hrank/ranks.py",
           "compress": "nets/compress.py"}
TESTS = ["tests/test_evaluation.py", "tests/test_end_to_end.py", "tests/test_pruning.py", "tests/test_ranks.py",
         "tests/test_compress.py"]  # the tests that guard those modules
COPIED = ["lib", "tests", "benchmarks", "data_scripts", "notebooks", "docs", "README.md", "Makefile",
          "requirements.txt", "pyproject.toml"]
KILLED = {"killed", "timeout", "segfault"}  # a timeout or crash is a mutant the tests noticed

_DATA = json.loads((Path(__file__).with_name("mutmut_explained.json")).read_text(encoding="utf-8"))
NUMPY_WHY, SPEED_ONLY, PROGRESS_WHY = (_DATA["reasons"][k] for k in ("numpy", "speed_only", "progress"))
# Survivors users cannot observe, by function and mutated line: {(function, line): why} (mutmut_explained.json)
EXPLAINED = {(function, line): _DATA["reasons"].get(why, why) for function, why, *lines in _DATA["survivors"]
             for line in lines}
BY_FUNCTION = {"batched_ranks": (re.compile(r"chunk: int = |workers|step = |pieces"), SPEED_ONLY)}  # work splits
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
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, scratch / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        elif (ROOT / name).is_file():
            shutil.copy2(ROOT / name, scratch / name)
    if tests_rev:
        shutil.rmtree(scratch / "tests")
        archive = subprocess.run(["git", "archive", tests_rev, "tests"], cwd=ROOT, capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(scratch)], input=archive.stdout, check=True)
    (scratch / "lib").rename(scratch / "src")
    if (ROOT.parent / "shared").is_dir():  # conftest looks beside the checkout (here: beside mutants/)
        (scratch / "shared").symlink_to(ROOT.parent / "shared")
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
    pairs = (line.strip().rpartition(": ") for line in text.splitlines())
    return {name: status.strip() for name, sep, status in pairs if sep and name.startswith("hrank_ssd.")}


def module_of(name: str) -> str:
    return next(m for m, f in MODULES.items() if name.startswith("hrank_ssd." + f[:-3].replace("/", ".") + "."))


def function_of(name: str) -> str:
    """``hrank_ssd.hrank.ranks.xǁRankAccumulatorǁ_hook__mutmut_3`` -> ``RankAccumulator._hook``."""
    mangled = name.rsplit(".", 1)[1].split("__mutmut_")[0]
    return mangled[2:] if mangled.startswith("x_") else ".".join(p for p in mangled.split("ǁ")[1:] if p)


def mutated_line(diff: str) -> str:
    """The first added line of a mutant's diff, stripped, without a trailing comment."""
    added = [line[1:] for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")]
    return re.sub(r"\s+# [^'\"]*$", "", added[0]).strip() if added else ""


def explain(function: str, line: str) -> str:
    """Why a survivor may survive, or '' when nothing explains it."""
    if (function, line) in EXPLAINED:
        return EXPLAINED[(function, line)]
    if function in BY_FUNCTION and BY_FUNCTION[function][0].search(line):
        return BY_FUNCTION[function][1]
    return next((why for pattern, why in CLASSES if pattern.search(line)), "")


def run_mutmut(scratch: Path, workers: int) -> dict:
    env, mutmut = dict(os.environ, OMP_NUM_THREADS="1"), [sys.executable, "-m", "mutmut"]
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
    """The page, and how many survivors nothing explains."""
    rows, unexplained = [], 0
    for name, status in sorted(now["results"].items()):
        if status not in KILLED:
            function, line = function_of(name), mutated_line(now["diffs"].get(name, ""))
            why = explain(function, line)
            unexplained += not why
            rows.append(f"| {module_of(name)} | `{function}` | {status} | `{line[:110].replace('|', chr(92) + '|')}` "
                        f"| {why or '**unexplained**'} |")
    old = summary(before["results"]) if before else {}
    lines = ["# Mutation check by mutmut", "",
             f"`python benchmarks/mutmut_check.py` ({time.strftime('%Y-%m-%d')}, mutmut {version}, "
             f"{platform.machine()}, {seconds / 60:.0f} min): every mutant mutmut makes of `evaluation`, `pruning`, "
             f"`ranks` and `compress`, each run against the tests that call its function among {', '.join(TESTS)}. "
             "A timeout counts as killed (the tests noticed).", "",
             "| module | mutants | killed now (by a timeout) | survived now | no test calls it |"
             + (" killed before |" if before else ""), "|---|---:|---:|---:|---:|" + ("---:|" if before else "")]
    for m, row in summary(now["results"]).items():
        lines.append(f"| {m} | {row['mutants']} | {row['killed']} ({row['timeout']}) | {row['survived']} | "
                     f"{row['no tests']} |" + (f" {old[m]['killed']} of {old[m]['mutants']} |" if before else ""))
    if before:
        lines += ["", f"*Before*: the same mutants against the tests of `{tests_rev}` (before the tests this check "
                      "led to)."]
    lines += ["", f"## Survivors ({len(rows)}, {unexplained} unexplained)", "",
              "| module | function | status | the mutated line | why it may survive |", "|---|---|---|---|---|"]
    return "\n".join(lines + rows) + "\n", unexplained


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
    print(text.split("## Survivors")[0] + f"{unexplained} unexplained survivors; report: {args.out}")
    return min(unexplained, 99)


if __name__ == "__main__":
    benchkit.run(main)
