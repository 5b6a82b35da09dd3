"""A hand-made mutation check of the four modules the results rest on: evaluation, pruning, ranks, compress.

Each mutant is one plausible bug (an off-by-one, a flipped comparison, a forgotten rule of the VOC devkit...)
written into a copy of ``lib/`` in a temporary folder; the module's tests then run against that copy
(``PYTHONPATH`` puts it before the installed package). A mutant is *killed* when a test fails, *survives*
when all pass. Writes ``benchmarks/mutation_check.md``; the exit code is the number of survivors.

    python benchmarks/mutation_check.py [--only evaluation,pruning] [--match "l1 criterion"] [--list] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from hrank_ssd.cli.main import guarded

ROOT = Path(__file__).resolve().parents[1]
TESTS = {  # the tests that guard each module (a mutant is run against these only)
    "evaluation": ["tests/test_evaluation.py", "tests/test_end_to_end.py"],
    "pruning": ["tests/test_pruning.py"],
    "ranks": ["tests/test_ranks.py"],
    "compress": ["tests/test_compress.py"],
}
MODULE_FILES = {"evaluation": "measure/evaluation.py", "pruning": "hrank/pruning.py", "ranks": "hrank/ranks.py",
                "compress": "nets/compress.py"}


@dataclass
class Mutant:
    module: str
    what: str
    old: str
    new: str


MUTANTS = [
    # evaluation: the VOC devkit's rules
    Mutant("evaluation", "11-point AP: a recall level nobody reaches scores 1 instead of 0",
           "if np.sum(above) > 0 else 0", "if np.sum(above) > 0 else 1"),
    Mutant("evaluation", "11-point AP over 10 recall levels (0.0-0.9) instead of 11",
           "np.arange(0.0, 1.1, 0.1)", "np.arange(0.0, 1.0, 0.1)"),
    Mutant("evaluation", "a detection at exactly the IoU threshold counts (the devkit needs >)",
           "if float(ious[best]) > iou_threshold:", "if float(ious[best]) >= iou_threshold:"),
    Mutant("evaluation", "a detection of a difficult object is a TP instead of ignored",
           "            if difficult[image_id][best]:\n                continue",
           "            if False:\n                continue"),
    Mutant("evaluation", "a second detection of the same object is a TP instead of an FP",
           "if (image_id, best) in matched:", "if False:"),
    Mutant("evaluation", "detections ranked by ascending score",
           "order = np.argsort(-scores)", "order = np.argsort(scores)"),
    Mutant("evaluation", "difficult objects counted in the number of positives",
           "            if not diff:\n                npos[c]", "            if True:\n                npos[c]"),
    Mutant("evaluation", "a class whose objects are all difficult scores NaN (pytorch-ssd's crash) not 0",
           "ap = 0.0 if only_difficult and use_2007_metric else math.nan", "ap = math.nan"),
    Mutant("evaluation", "IoU without subtracting the intersection from the union",
           "area_a + area_b - inter + _EPS", "area_a + area_b + _EPS"),
    Mutant("evaluation", "area AP without the precision envelope",
           "        precision[i - 1] = np.maximum(precision[i - 1], precision[i])", "        pass"),
    # pruning: which filters, and the surgery
    Mutant("pruning", "keeps the lowest-ranked filters instead of the highest",
           "return sorted(int(i) for i in order[len(scores) - keep:])", "return sorted(int(i) for i in order[:keep])"),
    Mutant("pruning", "rounding to a multiple rounds down",
           "return min(channels, -(-keep // round_to) * round_to)", "return max(1, keep // round_to * round_to)"),
    Mutant("pruning", "the next layer's input channels are not sliced with its producer's kept filters",
           "            t = t.index_select(1, index[in_layer])", "            t = t[:, : index[in_layer].numel()]"),
    Mutant("pruning", "kept indices not sorted (filters reordered in the rebuilt layer)",
           "        out.append(idx.sort().values)", "        out.append(idx.flip(0))"),
    Mutant("pruning", "the masked reference zeroes only conv weights, not biases and BatchNorm",
           "            p[~keep] = 0", "            p[~keep] = 0 if p.dim() > 1 else p[~keep]"),
    Mutant("pruning", "l1 criterion scores filters by their sum, not the sum of absolute values",
           "state[producer_key(net, i) + \".weight\"].abs().flatten(1)",
           "state[producer_key(net, i) + \".weight\"].flatten(1)"),
    # ranks
    Mutant("ranks", "average rank divides by the batches instead of the images",
           "return [(s / self.images).numpy()", "return [(s / max(1, self.images // 2)).numpy()"),
    Mutant("ranks", "an all-zero map skipped by the SVD gets rank 1 instead of 0",
           "ranks = torch.zeros(flat.size(0), device=flat.device)", "ranks = torch.ones(flat.size(0), device=flat.device)"),
    Mutant("ranks", "the borderline band's upper bound uses tol * factor",
           "hi = (s > tol / factor).sum(1).float()", "hi = (s > tol * factor).sum(1).float()"),
    Mutant("ranks", "rank agreement calls every difference borderline",
           "border = high > low", "border = high >= low"),
    Mutant("ranks", "ranks summed over the channels instead of the images",
           "r = self.rank_fn(output).sum(0).cpu()", "r = self.rank_fn(output).sum(1, keepdim=True).expand(-1, output.size(1))[0].cpu()"),
    # compress
    Mutant("compress", "a compress rate with fewer rates than layers is padded instead of refused",
           "    if len(values) < num_layers:\n        raise", "    if len(values) < 0:\n        raise"),
    Mutant("compress", "a rate of 1.0 (remove every filter) accepted",
           "if not 0.0 <= r < 1.0:", "if not 0.0 <= r <= 1.0:"),
    Mutant("compress", "the spec's extra rates are kept instead of cut to the net's layers",
           "    return values[:num_layers]", "    return values"),
    Mutant("compress", "format_compress_rate writes runs of equal rates as single entries",
           'parts.append(f"[{rates[i]:g}]*{j - i}" if j - i > 1 else f"[{rates[i]:g}]")',
           'parts.append(f"[{rates[i]:g}]")'),
]


def run_mutant(m: Mutant, timeout: int) -> tuple:
    with tempfile.TemporaryDirectory(prefix="mutant-") as tmp:
        lib = Path(tmp) / "lib"
        shutil.copytree(ROOT / "lib", lib, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        path = lib / "hrank_ssd" / MODULE_FILES[m.module]
        text = path.read_text()
        if text.count(m.old) != 1:
            return "stale", 0.0, f"the mutated text occurs {text.count(m.old)} times in {m.module}.py"
        path.write_text(text.replace(m.old, m.new))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(lib), os.environ.get("PYTHONPATH", "")]))
        start = time.perf_counter()
        try:
            done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                                   "-p", "no:randomly", *TESTS[m.module]], cwd=ROOT, env=env,
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return "killed", time.perf_counter() - start, "timeout"
        seconds = time.perf_counter() - start
        failed = [ln for ln in done.stdout.splitlines() if ln.startswith("FAILED") or ln.startswith("ERROR")]
        if done.returncode == 0:
            return "survived", seconds, ""
        return "killed", seconds, (failed[0][:160] if failed else done.stdout.strip().splitlines()[-1][:160])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", default=None, help="comma-separated modules")
    p.add_argument("--match", default=None, help="only mutants whose description contains this text")
    p.add_argument("--list", action="store_true")
    p.add_argument("--timeout", type=int, default=1200)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "mutation_check.md"))
    args = p.parse_args(argv)
    chosen = [m for m in MUTANTS if (not args.only or m.module in args.only.split(","))
              and (not args.match or args.match in m.what)]
    if args.list:
        for m in chosen:
            print(f"{m.module}: {m.what}")
        return 0
    rows = []
    for m in chosen:
        status, seconds, by = run_mutant(m, args.timeout)
        rows.append((m, status, seconds, by))
        print(f"{status:<9} {seconds:6.1f} s  {m.module}: {m.what}  {by}", flush=True)
    survivors = [r for r in rows if r[1] != "killed"]
    lines = ["# Mutation check", "", f"`python benchmarks/mutation_check.py` ({time.strftime('%Y-%m-%d')}): "
             f"{len(rows) - len(survivors)} of {len(rows)} mutants killed. Each mutant is one deliberate bug in a "
             "copy of `lib/`, run against the module's tests (" + ", ".join(
                 f"{k}: {' '.join(v)}" for k, v in TESTS.items()) + ").", "",
             "| module | mutant | result | seconds | by |", "|---|---|---|---:|---|"]
    for m, status, seconds, by in rows:
        lines.append(f"| {m.module} | {m.what} | {status} | {seconds:.0f} | {by.replace('|', '/')} |")
    Path(args.out).write_text("\n".join(lines) + "\n")
    return len(survivors)


if __name__ == "__main__":
    sys.exit(guarded(main))
