"""``download``: fetch pretrained weights, labels and HRank ranks listed in weights_manifest.json."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser(
        "download", help="download checkpoints, labels and ranks (checksummed, resumable, Drive + mirrors)",
        description="Fetch artifacts of weights_manifest.json into DEST (default: every weights and labels "
                    "artifact). Sources are tried in order; see docs/downloads.md.")
    p.add_argument("names", nargs="*", help="artifact names (see --list); default: all weights and labels")
    p.add_argument("--dest", default=".", help="folder the manifest's paths (models/...) are relative to")
    p.add_argument("--manifest", default=None, help="manifest file (default: the repository's weights_manifest.json)")
    p.add_argument("--record", action="store_true",
                   help="write size and sha256 of each verified file into the manifest")
    p.add_argument("--list", action="store_true", help="print the artifacts and exit")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hrank_ssd.io.downloads import fetch_many
    from hrank_ssd.io.manifest import list_rows, load_manifest
    from hrank_ssd.nets.models import fit_problem  # a checkpoint must be the net and widths its entry names

    manifest = load_manifest(args.manifest)
    if args.list:
        rows = list_rows(manifest, args.dest)
        cols = ["name", "kind", "net", "file", "size", "verified", "present"]
        widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in cols}
        print("  ".join(c.ljust(widths[c]) for c in cols).rstrip())
        for r in rows:
            print("  ".join(r[c].ljust(widths[c]) for c in cols).rstrip())
        return 0
    for path in fetch_many(args.names, args.dest, manifest, record=args.record, progress=not args.quiet,
                           check=fit_problem):
        print(path)
    return 0
