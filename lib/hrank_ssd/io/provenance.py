"""``downloads.json``: where each downloaded file came from (which source, which URL, how many bytes, when)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from hrank_ssd.io.files import atomic_write_text
from hrank_ssd.io.verify import tree_size

RECORD_NAME = "downloads.json"


def note_source(root: Path, name: str, path: Path, source: str, url: str, count_bytes: bool = True) -> None:
    """Record where ``name`` (at ``path``) came from in ``root/downloads.json``; ``count_bytes=False``: no size."""
    record = root / RECORD_NAME
    try:
        known = json.loads(record.read_text(encoding="utf-8")) if record.is_file() else {}
    except ValueError:
        known = {}  # a damaged record is rebuilt, never an error
    known[name] = {"file": os.path.relpath(path, root), "source": source, "url": url, "bytes": tree_size(path) if count_bytes else None,
                   "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    atomic_write_text(record, json.dumps(known, indent=1) + "\n")
