"""PASCAL VOC tars: mirrors and md5s from the manifest's ``voc-<set>`` entries, downloaded, checked and extracted."""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Sequence

from hrank_ssd.errors import HRankError
from hrank_ssd.io.archives import extract_archive
from hrank_ssd.io.files import remove_path
from hrank_ssd.io.http import download_url
from hrank_ssd.io.manifest import as_manifest
from hrank_ssd.io.messages import log

VOC_SETS = {  # name: (year, tar, folder inside VOCdevkit it becomes); sources and md5 in the manifest (voc-<name>)
    "2007-trainval": ("2007", "VOCtrainval_06-Nov-2007.tar", "VOC2007"),
    "2007-test": ("2007", "VOCtest_06-Nov-2007.tar", "VOC2007-test"),
    "2012-trainval": ("2012", "VOCtrainval_11-May-2012.tar", "VOC2012"),
}


def voc_urls(year: str, tar: str, mirrors: Sequence[str]) -> List[str]:
    """Each mirror's URL for ``tar``; a mirror without ``{tar}`` is a folder URL the name is appended to."""
    out = []
    for m in mirrors:
        out.append(m.format(year=year, tar=tar) if "{tar}" in m else m.rstrip("/") + "/" + tar)
    return out


def voc_artifact(voc_set: str, manifest=None) -> dict:
    """The manifest entry ``voc-<set>``: the tar's mirrors (http sources, in order) and its md5."""
    man = as_manifest(manifest)
    return man.get(f"voc-{voc_set}")


def download_voc(dest="data", sets: Sequence[str] = ("2007-trainval", "2007-test", "2012-trainval"),
                 mirrors: Sequence[str] = (), manifest=None, test_dir: str = "VOC2007-test",
                 keep_tars: bool = True, progress: bool = True) -> Path:
    """Download, md5-check and extract PASCAL VOC into ``dest/VOCdevkit``; return that folder.

    URLs and md5s come from the manifest's ``voc-<set>`` entries (``manifest``, else ``$HRANK_SSD_MANIFEST``,
    else the repository's); ``mirrors`` are tried before them. The 2007 test tar unpacks to ``VOCdevkit/VOC2007``
    like the trainval one; it is moved to ``VOCdevkit/<test_dir>`` (the original project's ``VOC2007-test``);
    ``test_dir="VOC2007"`` merges both into one folder (torchvision's layout).
    """
    dest = Path(dest)
    devkit = dest / "VOCdevkit"
    unknown = [s for s in sets if s not in VOC_SETS]
    if unknown:
        raise HRankError(f"unknown VOC set {', '.join(unknown)}; choose among {', '.join(VOC_SETS)}")
    if not test_dir or "/" in test_dir or test_dir in (".", ".."):
        raise HRankError(f"--test_dir {test_dir!r} must be a plain folder name such as VOC2007-test")
    man = as_manifest(manifest)
    for name in sets:
        year, tar, folder = VOC_SETS[name]
        folder = test_dir if name == "2007-test" else folder
        marker = devkit / f".complete-{name}-{folder}"
        if marker.is_file() and (devkit / folder).is_dir():
            log(f"VOC {name}: {devkit / folder} already extracted")
            continue
        art = voc_artifact(name, man)
        urls = voc_urls(year, tar, mirrors) + [s["url"] for s in art["sources"] if s["type"] == "http"]
        tar_path = download_url(urls, dest / tar, md5=art.get("md5"), sha256=art.get("sha256"), size=art.get("size"),
                                progress=progress, what=f"VOC {name}")
        _extract_year(tar_path, year, dest / f".extract-{name}", devkit / folder, progress)
        marker.write_text((art.get("md5") or "") + "\n")
        log(f"VOC {name}: extracted into {devkit / folder}")
        if not keep_tars:
            tar_path.unlink()
    return devkit


def _extract_year(tar_path: Path, year: str, tmp: Path, out: Path, progress: bool) -> None:
    """Extract ``tar_path`` in ``tmp`` and move its ``VOC<year>`` folder to (or into) ``out``."""
    remove_path(tmp)
    tmp.mkdir(parents=True)
    try:
        extract_archive(tar_path, tmp, progress=progress)
        found = sorted(p for p in tmp.rglob(f"VOC{year}") if p.is_dir())
        if not found:
            raise HRankError(f"{tar_path} holds no VOC{year} folder; delete it and download again")
        out.parent.mkdir(parents=True, exist_ok=True)
        _merge_tree(found[0], out)
    finally:
        remove_path(tmp)


def _merge_tree(src: Path, dst: Path) -> None:
    """Move ``src`` to ``dst``; when ``dst`` exists, move ``src``'s files into it (replacing same names)."""
    if not dst.exists():
        os.replace(src, dst)
        return
    for p in sorted(src.rglob("*")):
        if p.is_file():
            q = dst / p.relative_to(src)
            q.parent.mkdir(parents=True, exist_ok=True)
            os.replace(p, q)
