"""Zip and tar archives: safe extraction, bundles unpacked once into a cache folder, members found by glob."""

from __future__ import annotations

import fnmatch
import os
import re
import tarfile
import zipfile
from pathlib import Path
from typing import Optional, Sequence

from hrank_ssd.errors import HRankError
from hrank_ssd.io.files import install_staged, remove_path
from hrank_ssd.io.verify import UNPACKED_MARKER, SourceFailed, log, one_line, sha256sum, tree_files
from hrank_ssd.progress import tqdm


def extract_archive(archive, out, progress: bool = False) -> None:
    """Unpack a zip or tar into ``out`` (members cannot escape ``out``), with a bar of files when ``progress``."""
    archive, out = Path(archive), Path(out)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as z:  # zipfile drops absolute paths and '..' itself
                z.extractall(out, tqdm(z.infolist(), desc=f"extract {archive.name}", unit="file",
                                       disable=not progress))
            return
        if not hasattr(tarfile, "data_filter"):
            raise HRankError("this Python cannot extract tars safely: use Python 3.9.17, 3.10.12, 3.11.4 or newer")
        with tarfile.open(archive) as t:
            for m in tqdm(t.getmembers(), desc=f"extract {archive.name}", unit="file", disable=not progress):
                t.extract(m, out, filter="data")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as e:
        raise HRankError(f"{archive} is a damaged archive ({one_line(e)}); delete it and download again") from None


def unpack_bundle(zip_path: Path, art: dict, dest: Path, progress: bool = False) -> Path:
    """Unpack the bundle ``art`` once into ``dest/<unpack_to>`` (else beside the zip), stamped with its sha256."""
    out = dest / art["unpack_to"] if art.get("unpack_to") else zip_path.with_suffix("")
    stamp = f"{zip_path.stat().st_size} {sha256sum(zip_path)}"
    marker = out / UNPACKED_MARKER
    if marker.is_file() and marker.read_text().strip() == stamp:
        return out
    tmp = out.with_name(f".{out.name}.unpack{os.getpid()}")
    remove_path(tmp)
    tmp.mkdir(parents=True)
    try:
        extract_archive(zip_path, tmp, progress=progress)
        (tmp / UNPACKED_MARKER).write_text(stamp + "\n")
        install_staged(tmp, out)
    finally:
        remove_path(tmp)
    log(f"{art['name']}: unpacked {zip_path.name} into {out}")
    return out


def find_member(root: Path, patterns: Sequence[str], choose: Optional[str] = None) -> Path:
    """The one file under ``root`` matching the first pattern that matches anything (:func:`match_member`)."""
    files = [f for f in tree_files(root) if not f.startswith("__MACOSX/") and not Path(f).name.startswith("._")]
    return root / match_member(files, patterns, choose, "member")


def match_member(names: Sequence[str], patterns: Sequence[str], choose: Optional[str] = None,
                 what: str = "member") -> str:
    """The one of ``names`` matching the first pattern that matches any (case-insensitively, path or file name);
    ``choose="lowest-loss"`` picks the ``...-Loss-<x>.pth`` of lowest x; several or none: :class:`SourceFailed`."""
    for pat in patterns:
        p = pat.lower()
        hits = [f for f in names if fnmatch.fnmatchcase(f.lower(), p) or fnmatch.fnmatchcase(Path(f).name.lower(), p)]
        if len(hits) == 1 or hits and choose == "lowest-loss":
            return min(hits, key=_loss)
        if hits:
            raise SourceFailed(f"pattern {pat!r} matches several {what}s ({', '.join(hits[:6])}); "
                               f"set the source's member to one of them in the manifest")
    listing = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
    raise SourceFailed(f"no {what} matches {' or '.join(map(repr, patterns))} (it holds: {listing or 'nothing'}); "
                       "set the source's member glob in the manifest")


def _loss(name: str) -> float:
    """The x of a ``...-Loss-<x>.pth`` checkpoint name; infinity for other names."""
    m = re.search(r"loss-([0-9]+(?:\.[0-9]+)?)", Path(name).name.lower())
    return float(m.group(1)) if m else float("inf")
