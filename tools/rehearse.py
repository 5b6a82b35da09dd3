#!/usr/bin/env python3
"""Rehearse Colab's full-profile path offline: every notebook against a local stand-in of Drive, GCS and the VOC
mirrors on 127.0.0.1, each scenario with its own notebooks (``make rehearse``; docs/rehearsal.md).

Not part of the library: ``tools/rehearsal/`` holds the stand-in world, its scenarios and checks. Bad input is one
line (``error: ...``) and exit status 2; a failed check exits 1.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
for _folder in (HERE.parent / "lib", HERE):  # this checkout's library (installed or not); rehearsal/ beside us
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))

from hrank_ssd.cli.main import guarded  # noqa: E402
from hrank_ssd.course.results import NOTEBOOKS  # noqa: E402
from hrank_ssd.errors import HRankError  # noqa: E402

SCENARIO_HELP = ("comma-separated among normal (every source works), quota (Drive over quota for the bundle), "
                 "corrupt (damaged downloads), moved (pytorch-ssd's bucket gone: its Drive folder), voc-down (every "
                 "VOC mirror fails: the one-line message), own-voc (your own VOC tars, the label file nowhere), "
                 "no-ranks (the rank folder unlisted), unpruned (the zip's pick is an unpruned checkpoint); "
                 "default: all of them; docs/rehearsal.md")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tools/rehearse.py", description=__doc__.splitlines()[0])
    p.add_argument("--out", default=None, help="output folder (default: runs/rehearsal-<timestamp>)")
    p.add_argument("--runs", default="runs", help="folder that receives rehearsal-<timestamp>/")
    p.add_argument("--scenarios", default=None, help=SCENARIO_HELP)
    p.add_argument("--colab_env", default=None,
                   help="a venv made (once) with Colab's Python and package versions (colab/colab-gpu-2026-08.txt) "
                        "that runs the notebooks; default: this Python")
    p.add_argument("--python", default=None,
                   help="Colab's Python (3.13) to make the --colab_env venv with; default: python3.13 on PATH, else "
                        "pyenv's, else this Python with a warning")
    p.add_argument("--device", default="cpu", help="the notebooks' device: cpu (default), cuda or cuda:N")
    p.add_argument("--notebooks", default=None, help="comma-separated subset of the notebooks for every scenario "
                                                     "(default: each scenario's own, all seven but for moved, "
                                                     "voc-down and own-voc)")
    p.add_argument("--train_images", type=int, default=16, help="images in the stand-in VOC2007 trainval tar")
    p.add_argument("--test_images", type=int, default=8, help="images in the stand-in VOC2007 test tar")
    return p


def run(args: argparse.Namespace) -> int:
    from rehearsal.env import colab_env
    from rehearsal.run import rehearse, summary_lines
    from rehearsal.scenarios import SCENARIOS

    from hrank_ssd.course.results import repo_root
    from hrank_ssd.devices import resolve_device

    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()] if args.scenarios else list(SCENARIOS)
    notebooks = [n.strip() for n in args.notebooks.split(",") if n.strip()] if args.notebooks else []
    unknown = [n for n in notebooks if n not in NOTEBOOKS]
    if unknown:
        raise HRankError(f"unknown notebook {', '.join(unknown)}: choose among {', '.join(NOTEBOOKS)}")
    if args.python and not args.colab_env:
        raise HRankError("--python makes the --colab_env venv: pass --colab_env too (e.g. --colab_env .venv-colab)")
    device = str(resolve_device(args.device))
    out = Path(args.out) if args.out else Path(args.runs) / f"rehearsal-{time.strftime('%Y%m%d-%H%M%S')}"
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    python = colab_env(Path(args.colab_env).resolve(), repo_root(), log, args.python) if args.colab_env else None
    summary = rehearse(out, scenarios, python, notebooks, args.train_images, args.test_images, log, device)
    print("\n".join(summary_lines(summary)))
    print(f"details: {Path(out).resolve() / 'rehearsal.json'}")
    return 0 if summary["ok"] else 1


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return guarded(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
