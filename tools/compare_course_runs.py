"""Two offline course runs side by side: did a refactor change what the course makes?

Each argument is a clone in which `make course` ran (its `work/offline` and `runs/latest`). Prints which data,
rank and checkpoint files are byte-identical, which model files hold equal tensors (files renamed since are
matched through RENAMED), what differs inside checkpoints that are not byte-identical, and both map.csv tables.
Models the latency budgets choose are left out: their widths follow a table timed on the machine.

    python tools/compare_course_runs.py BEFORE_CLONE AFTER_CLONE
"""

from __future__ import annotations

import hashlib
import math
import sys
from pathlib import Path

import pandas as pd
import torch

# model files named by what they hold (the rate, the criterion, the finetune) instead of by a role
RENAMED = {"vgg16-ssd-hrank-init.pth": "vgg16-ssd-pruned-0.1x7_0.5x7.pth",
           "vgg16-ssd-hrank-ft1.pth": "vgg16-ssd-pruned-0.1x7_0.5x7-ft1.pth",
           "vgg16-ssd-hrank-ft1-kd.pth": "vgg16-ssd-pruned-0.1x7_0.5x7-ft1-kd.pth",
           "vgg16-ssd-l1-init.pth": "vgg16-ssd-pruned-0.1x7_0.5x7-l1.pth",
           "vgg16-ssd-l1-ft1.pth": "vgg16-ssd-pruned-0.1x7_0.5x7-l1-ft1.pth",
           "vgg16-ssd-random-init.pth": "vgg16-ssd-pruned-0.1x7_0.5x7-random.pth",
           "vgg16-ssd-random-ft1.pth": "vgg16-ssd-pruned-0.1x7_0.5x7-random-ft1.pth",
           "mb1-ssd-hrank-init.pth": "mb1-ssd-pruned-0.3x14.pth"}


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def load(path: Path):
    return torch.load(path, map_location="cpu", weights_only=False)


def leaves(value, path=""):
    """(dotted path, leaf) for every leaf of nested dicts and lists; list indices are dropped from the path."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from leaves(item, f"{path}.{key}")
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from leaves(item, path)
    else:
        yield path, value


def same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def differing(a, b) -> list:
    """The dotted paths whose leaves differ between two loaded checkpoints."""
    la, lb = list(leaves(a)), list(leaves(b))
    if [k for k, _ in la] != [k for k, _ in lb]:
        return sorted({k for k, _ in la} ^ {k for k, _ in lb}) or ["the order of entries"]
    return sorted({k for (k, x), (_, y) in zip(la, lb) if not same(x, y)})


def compare(before: Path, after: Path) -> None:
    wb, wa = before / "work" / "offline", after / "work" / "offline"
    identical, changed = 0, []
    for sub in ("data", "ranks", "ranks-mb1-ssd", "checkpoints"):
        for p in sorted(f for f in (wb / sub).rglob("*") if f.is_file() and f.suffix not in (".json", ".png", ".csv")):
            q = wa / sub / p.relative_to(wb / sub)
            if "-lat-" in str(p) or not q.is_file():
                continue
            if md5(p) == md5(q):
                identical += 1
            else:
                changed.append((p, q))
    print(f"data, ranks, checkpoints: {identical} files byte-identical, {len(changed)} not")
    for p, q in changed:
        inside = differing(load(p), load(q)) if p.suffix in (".tar", ".pth") else ["its bytes"]
        print(f"  {p.relative_to(wb)} differs in: {', '.join(inside)}")
    for p in sorted((wb / "models").glob("*.pth")):
        q = wa / "models" / RENAMED.get(p.name, p.name)
        if "-lat-" in p.name:
            continue
        if not q.is_file():
            print(f"{p.name}: no {q.name} in the second run")
        elif md5(p) == md5(q):
            print(f"{p.name} -> {q.name}: byte-identical")
        else:
            print(f"{p.name} -> {q.name}: {'tensors equal' if not differing(load(p), load(q)) else 'DIFFERENT'}")
    for run in (before, after):
        print(f"\n{run}:\n{pd.read_csv(run / 'runs' / 'latest' / 'results' / 'map.csv').to_string(index=False)}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python tools/compare_course_runs.py BEFORE_CLONE AFTER_CLONE")
    compare(Path(sys.argv[1]), Path(sys.argv[2]))
