"""Is a downloaded file the right one (size, sha256/md5, not an HTML page, an intact PyTorch checkpoint), where it
came from (``downloads.json``), and the download code's words: progress lines on stderr, one-line reasons."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tarfile
import time
import zipfile
from pathlib import Path
from typing import List, Optional

from hrank_ssd.io.files import atomic_write_text

CHUNK = 1 << 20
UNPACKED_MARKER = ".hrank_ssd_unpacked"  # stamps an unpacked bundle folder (archives.py); not part of its content
QUOTA_MARKERS = (b"Quota exceeded", b"Too many users have viewed or downloaded")
RECORD_NAME = "downloads.json"


class SourceFailed(Exception):
    """One source did not give a usable file; the message is the reason (one line)."""


def log(msg: str) -> None:
    """Print a progress line on stderr at once (stdout stays for what a command returns, such as paths)."""
    print(msg, file=sys.stderr, flush=True)


def one_line(text: object, limit: int = 300) -> str:
    """``text`` on one line (whitespace runs become one space), cut to ``limit`` characters with ``...``."""
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _hash(path, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def sha256sum(path) -> str:
    """Hex sha256 of a file, or of a folder (sorted ``<relative path> <sha256>`` lines of its files)."""
    path = Path(path)
    if path.is_dir():
        lines = "".join(f"{rel} {_hash(path / rel, 'sha256')}\n" for rel in tree_files(path))
        return hashlib.sha256(lines.encode()).hexdigest()
    return _hash(path, "sha256")


def md5sum(path) -> str:
    """Hex md5 of a file (the VOC tars are published with md5s)."""
    return _hash(path, "md5")


def tree_files(root: Path) -> List[str]:
    """The files under ``root`` as sorted relative POSIX paths, without the unpacked-bundle marker."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if p.is_file() and p.name != UNPACKED_MARKER)


def tree_size(path: Path) -> int:
    """Bytes of a file, or of the files of a folder (as :func:`tree_files` lists them)."""
    return sum((path / rel).stat().st_size for rel in tree_files(path)) if path.is_dir() else path.stat().st_size


def note_source(root: Path, name: str, path: Path, source: str, url: str, count_bytes: bool = True) -> None:
    """Record where ``name`` (at ``path``) came from in ``root/downloads.json``; ``count_bytes=False``: no size."""
    record = root / RECORD_NAME
    try:
        known = json.loads(record.read_text(encoding="utf-8")) if record.is_file() else {}
    except ValueError:
        known = {}  # a damaged record is rebuilt, never an error
    known[name] = {"file": os.path.relpath(path, root), "source": source, "url": url,
                   "bytes": tree_size(path) if count_bytes else None, "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    atomic_write_text(record, json.dumps(known, indent=1) + "\n")


def _shape_problem(path: Path, art: dict) -> Optional[str]:
    """A folder artifact lacking a member, or a file that is empty, an HTML page or of the wrong size."""
    members = art.get("members")
    if members and not path.is_dir():
        return "not a folder"
    for m in members or [None]:
        p, name = (path / m, f"{m}: ") if m else (path, "")
        if not p.is_file():
            return f"{m} is missing" if m else "not a file"
        if p.stat().st_size == 0:
            return f"{m} is empty" if m else "empty file"
        with open(p, "rb") as f:
            head = f.read(65536)
        if any(q in head for q in QUOTA_MARKERS):
            return (f"{name}Google Drive served its 'quota exceeded / too many users have downloaded this file' page "
                    "instead of the file (the file's daily download quota is spent)")
        if head.lstrip()[:64].lower().startswith((b"<!doctype html", b"<html")):
            return f"{name}the server sent an HTML page instead of the file (a login, virus-scan or error page)"
    if not members and art.get("size") is not None and path.stat().st_size != art["size"]:
        return f"size {path.stat().st_size} bytes, expected {art['size']}"
    return None


def file_problem(path: Path, art: dict) -> Optional[str]:
    """None when ``path`` is a usable copy of the manifest entry ``art``, else why not (one line)."""
    bad = _shape_problem(path, art)
    if bad:
        return bad
    if art.get("md5") and (got := md5sum(path)) != art["md5"]:
        return f"md5 {got} does not match the expected {art['md5']}"
    if art.get("sha256") and (got := sha256sum(path)) != art["sha256"]:
        return f"sha256 {got[:12]}... does not match the manifest's {art['sha256'][:12]}..."
    if art["kind"] == "bundle" and not (zipfile.is_zipfile(path) or tarfile.is_tarfile(path)):
        return "not a zip archive"
    if art["kind"] != "weights":
        return None
    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":
            return None  # a legacy pickle has no checksum to test
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:  # zlib errors surface as these too
        return f"a damaged PyTorch checkpoint ({one_line(e, 120)})"
    return f"a damaged PyTorch checkpoint (CRC mismatch in {bad})" if bad else None
