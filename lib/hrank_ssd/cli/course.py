"""``course``: run the whole notebook course (or its steps directly) into runs/<timestamp>/, then write the report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hrank_ssd.cli.args import device_arg
from hrank_ssd.course.results import STEPS, repo_root
from hrank_ssd.errors import HRankError


def add_parser(sub) -> None:
    p = sub.add_parser("course", help="run the notebook course end to end and write runs/<timestamp>/report.md",
                       description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="offline", choices=("offline", "tiny", "full"),
                   help="offline: synthetic data, small models trained here; tiny: seconds (CI); "
                        "full: real VOC and the published weights (network needed)")
    p.add_argument("--runs", default="runs", help="folder that receives runs/<timestamp>/ and the latest pointer")
    p.add_argument("--work", default="work", help="reusable artifacts (datasets, models, ranks) per profile")
    p.add_argument("--notebooks", default=None, help="notebook folder (default: the repository's notebooks/)")
    p.add_argument("--no_notebooks", action="store_true",
                   help="run the Course steps directly instead of executing the notebooks (same results files)")
    p.add_argument("--steps", default=None,
                   help=f"with --no_notebooks: comma-separated subset of {','.join(STEPS)} (default all)")
    p.add_argument("--run_dir", default=None, help="write into this folder instead of runs/<timestamp>/")
    device_arg(p)
    p.add_argument("--update_readme", action="store_true",
                   help="also refresh README.md's <!-- results:start --> ... <!-- results:end --> block")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hrank_ssd.course.notebooks import run_course  # the library (torch) loads when the command runs

    if args.steps and not args.no_notebooks:
        raise HRankError("--steps works with --no_notebooks only (the notebooks run every step)")
    steps = [s.strip() for s in args.steps.split(",") if s.strip()] if args.steps else None
    if args.no_notebooks:
        notebooks = None
    else:
        notebooks = Path(args.notebooks) if args.notebooks else repo_root() / "notebooks"
    run_course(args.profile, runs=args.runs, work=args.work, run_dir=Path(args.run_dir) if args.run_dir else None,
               device=args.device, notebooks=notebooks, steps=steps,
               readme=repo_root() / "README.md" if args.update_readme else None,
               log=lambda msg: print(msg, flush=True),
               progress=sys.stderr.isatty())  # bars (cells per notebook, or the steps') in a terminal only
    return 0
