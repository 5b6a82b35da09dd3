"""The course's own commands: ``course`` (the notebooks into runs/<timestamp>/ and a report) and ``download``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hrank_ssd.cli.main import command
from hrank_ssd.course.results import STEPS, repo_root
from hrank_ssd.errors import HRankError


def add_parser(sub) -> None:
    p = command(sub, "course", run_whole_course, "run the notebook course, write runs/<timestamp>/report.md",
                "--device")
    p.add_argument("--profile", default="offline", choices=("offline", "tiny", "full"),
                   help="offline: synthetic data; tiny: seconds (CI); full: real VOC, published weights (network)")
    p.add_argument("--runs", default="runs", help="folder that receives runs/<timestamp>/ and the latest pointer")
    p.add_argument("--work", default="work", help="reusable artifacts (datasets, models, ranks) per profile")
    p.add_argument("--notebooks", default=None, help="notebook folder (default: the repository's notebooks/)")
    p.add_argument("--no_notebooks", action="store_true", help="run the Course steps instead of the notebooks")
    p.add_argument("--steps", default=None, help=f"with --no_notebooks: some of {','.join(STEPS)} (default all)")
    p.add_argument("--run_dir", default=None, help="write into this folder instead of runs/<timestamp>/")
    p.add_argument("--update_readme", action="store_true", help="also refresh README.md's results block")
    p = command(sub, "download", run_download, "download checkpoints, labels, ranks (checksummed, resumable)")
    p.add_argument("names", nargs="*", help="artifact names (see --list); default: all weights and labels")
    p.add_argument("--dest", default=".", help="folder the manifest's paths (models/...) are relative to")
    p.add_argument("--manifest", default=None, help="manifest file (default: the repository's weights_manifest.json)")
    p.add_argument("--record", action="store_true", help="write each verified file's size and sha256 in the manifest")
    p.add_argument("--list", action="store_true", help="print the artifacts and exit")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def run_whole_course(args: argparse.Namespace) -> int:
    """Run the whole notebook course (or its steps directly) into runs/<timestamp>/, then write the report."""
    from hrank_ssd.course.notebooks import run_course  # the library (torch) loads when the command runs

    if args.steps and not args.no_notebooks:
        raise HRankError("--steps works with --no_notebooks only (the notebooks run every step)")
    steps = [s.strip() for s in args.steps.split(",") if s.strip()] if args.steps else None
    notebooks = None if args.no_notebooks else Path(args.notebooks or repo_root() / "notebooks")
    run_course(args.profile, runs=args.runs, work=args.work, run_dir=Path(args.run_dir) if args.run_dir else None,
               device=args.device, notebooks=notebooks, steps=steps,
               readme=repo_root() / "README.md" if args.update_readme else None,
               log=lambda msg: print(msg, flush=True),
               progress=sys.stderr.isatty())  # bars (cells per notebook, or the steps') in a terminal only
    return 0


def run_download(args: argparse.Namespace) -> int:
    """Fetch artifacts of weights_manifest.json into DEST, trying their sources in order (docs/downloads.md)."""
    from hrank_ssd.io.downloads import fetch_many
    from hrank_ssd.io.manifest import list_rows, load_manifest
    from hrank_ssd.nets.models import fit_problem  # a checkpoint must be the net and widths its entry names

    manifest = load_manifest(args.manifest)
    if args.list:
        rows = list_rows(manifest, args.dest)
        cols = ["name", "kind", "net", "file", "size", "verified", "present"]
        widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in cols}
        for r in [dict(zip(cols, cols)), *rows]:  # the header, then a line per artifact
            print("  ".join(r[c].ljust(widths[c]) for c in cols).rstrip())
        return 0
    for path in fetch_many(args.names, args.dest, manifest, record=args.record, progress=not args.quiet,
                           check=fit_problem):
        print(path)
    return 0
