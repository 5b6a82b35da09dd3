"""PASCAL VOC from your own copy (tars or a ``VOCdevkit``), else the manifest's mirrors; md5-checked, extracted."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from hrank_ssd.errors import HRankError
from hrank_ssd.io.archives import extract_archive
from hrank_ssd.io.downloads import AllSourcesFailed, Fetcher
from hrank_ssd.io.files import remove_path
from hrank_ssd.io.manifest import load_manifest
from hrank_ssd.io.verify import file_problem, log, note_source

VOC_SETS = {  # name: (year, tar, folder inside VOCdevkit it becomes); sources and md5 in the manifest (voc-<name>)
    "2007-trainval": ("2007", "VOCtrainval_06-Nov-2007.tar", "VOC2007"),
    "2007-test": ("2007", "VOCtest_06-Nov-2007.tar", "VOC2007-test"),
    "2012-trainval": ("2012", "VOCtrainval_11-May-2012.tar", "VOC2012"),
}
VOC_SOURCE_ENV = "HRANK_SSD_VOC_SOURCE"  # a folder with your own tars or extracted VOCdevkit, used before mirrors


def voc_source(source=None) -> Optional[Path]:
    """``source``, else ``$HRANK_SSD_VOC_SOURCE``, else None; an error when it is set but not a folder."""
    given = source if source is not None else os.environ.get(VOC_SOURCE_ENV) or None
    if given is None:
        return None
    path = Path(given).expanduser()
    if not path.is_dir():
        how = f"${VOC_SOURCE_ENV}" if source is None else "--voc_source"
        raise HRankError(f"{how} names {path}, which is not a folder: mount your Drive, fix the path, or unset it "
                         "to download VOC from the mirrors")
    return path


def download_voc(dest="data", sets: Sequence[str] = ("2007-trainval", "2007-test", "2012-trainval"),
                 mirrors: Sequence[str] = (), manifest=None, test_dir: str = "VOC2007-test",
                 keep_tars: bool = True, progress: bool = True, source=None) -> Path:
    """Download, md5-check and extract PASCAL VOC into ``dest/VOCdevkit``; return that folder. Tried in order:
    ``source`` (else ``$HRANK_SSD_VOC_SOURCE``), ``mirrors``, the manifest's URLs. The 2007 test set goes to
    ``VOCdevkit/<test_dir>`` (``VOC2007`` merges both sets as torchvision does)."""
    dest = Path(dest)
    devkit = dest / "VOCdevkit"
    unknown = [s for s in sets if s not in VOC_SETS]
    if unknown:
        raise HRankError(f"unknown VOC set {', '.join(unknown)}; choose among {', '.join(VOC_SETS)}")
    if not test_dir or "/" in test_dir or test_dir in (".", ".."):
        raise HRankError(f"--test_dir {test_dir!r} must be a plain folder name such as VOC2007-test")
    man = load_manifest(manifest)
    own = voc_source(source)
    for name in sets:
        year, tar, folder = VOC_SETS[name]
        folder = test_dir if name == "2007-test" else folder
        marker = devkit / f".complete-{name}-{folder}"
        if marker.is_file() and (devkit / folder).is_dir():
            log(f"VOC {name}: {devkit / folder} already extracted")
            continue
        art = man.get(f"voc-{name}")  # the tar's mirrors (http sources, in order) and its md5
        found, failures = _own_copy(own, name, folder, art) if own is not None else (None, [])
        if found is not None and found.is_dir():
            _link_folder(found, devkit / folder)
        else:
            tar_path = found or _mirrors(dest, name, art, mirrors, failures, progress, man)
            _extract_year(tar_path, year, dest / f".extract-{name}", devkit / folder, progress)
            if found is None and not keep_tars:
                tar_path.unlink()
        if found is not None:  # your folder is not walked to count its bytes
            note_source(dest, tar, found, f"own copy {found}", str(found), count_bytes=found.is_file())
        marker.write_text((art.get("md5") or "") + "\n")
        log(f"VOC {name}: ready in {devkit / folder}")
    return devkit


def _mirrors(dest: Path, name: str, art: dict, mirrors: Sequence[str], own: List[str], progress: bool, man) -> Path:
    """The tar of ``name`` in ``dest``: kept when verified, else from ``mirrors`` then the manifest's (a
    ``.part`` resumed); else one line: each mirror and why, ``own`` (why your copy did not do), what to do."""
    year, tar, folder = VOC_SETS[name]
    # a mirror without {tar} is a folder URL the tar's name is appended to
    urls = [m.format(year=year, tar=tar) if "{tar}" in m else m.rstrip("/") + "/" + tar for m in mirrors]
    sources = [{"type": "http", "url": u} for u in urls] + [s for s in art["sources"] if s["type"] == "http"]
    try:
        return Fetcher(man, dest, progress=progress).fetch({**art, "name": tar, "file": tar, "sources": sources})
    except AllSourcesFailed as e:
        md5 = f" (md5 {art['md5']})" if art.get("md5") else ""
        raise HRankError(f"could not download VOC {name}: tried {'; '.join(e.failures)}; "
                         f"{''.join(f + '; ' for f in own)}bring your own copy: put {tar}{md5} or an extracted "
                         f"VOCdevkit/{folder} in a folder and set {VOC_SOURCE_ENV}=that folder (on Colab a "
                         "folder of your mounted Drive, e.g. /content/drive/MyDrive/VOC; download_voc.py "
                         f"--voc_source), or put the tar at {(dest / tar).resolve()}, or pass --mirror URL, then "
                         "rerun") from None


def _own_copy(own: Path, name: str, folder: str, art: dict) -> Tuple[Optional[Path], List[str]]:
    """Your copy of ``name`` in ``own``: an extracted folder (preferred) or the tar, checked; else ``(None, [why])``."""
    year, tar, default_folder = VOC_SETS[name]
    split = "test" if name == "2007-test" else "trainval"
    names = dict.fromkeys([folder, default_folder] + ([f"VOC{year}"] if name == "2007-test" else []))
    for cand in [base / n for base in (own / "VOCdevkit", own) for n in names]:
        listed = cand / "ImageSets" / "Main" / f"{split}.txt"
        ids = listed.read_text().split() if listed.is_file() else []
        if ids and all((cand / sub / f"{i}.{ext}").is_file() for i in (ids[0], ids[-1])
                       for sub, ext in (("JPEGImages", "jpg"), ("Annotations", "xml"))):
            log(f"VOC {name}: using your extracted copy {cand} ({len(ids)} images listed; a folder has no md5)")
            return cand, []
    tars = sorted(p for p in [own / tar, *own.glob(f"*/{tar}")] if p.is_file())
    for path in tars:
        log(f"VOC {name}: checking your copy {path} (md5)")
        bad = file_problem(path, {"kind": "voc", "md5": art.get("md5"), "size": art.get("size")})
        if bad is None:
            return path, []
        log(f"VOC {name}: your copy {path} is not usable ({bad}); trying the mirrors")
        return None, [f"your copy {path}: {bad}"]
    log(f"VOC {name}: {own} holds neither {tar} nor an extracted VOCdevkit/{folder}; trying the mirrors")
    return None, [f"{VOC_SOURCE_ENV} {own}: no {tar} and no VOCdevkit/{folder} with {split}.txt there"]


def _link_folder(found: Path, out: Path) -> None:
    """Link ``out`` to ``found``; copy where links are not allowed or ``out`` holds the other split already."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.is_symlink() and out.resolve() == found.resolve():
        return
    _unlink_copy(out)  # another of your folders is linked here: merge both into a copy, never into your files
    if not out.exists():
        try:
            os.symlink(found.resolve(), out, target_is_directory=True)
            return
        except OSError:
            pass
    shutil.copytree(found, out, dirs_exist_ok=True)


def _extract_year(tar_path: Path, year: str, tmp: Path, out: Path, progress: bool) -> None:
    """Extract ``tar_path`` in ``tmp`` and move its ``VOC<year>`` folder to (or into) ``out``."""
    remove_path(tmp)
    tmp.mkdir(parents=True)
    _unlink_copy(out)  # your extracted folder, linked in: merge into a copy of it, never into your files
    try:
        extract_archive(tar_path, tmp, progress=progress)
        found = sorted(p for p in tmp.rglob(f"VOC{year}") if p.is_dir())
        if not found:
            raise HRankError(f"{tar_path} holds no VOC{year} folder; delete it and download again")
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.exists():  # merge: move the files in, replacing same names
            shutil.copytree(found[0], out, dirs_exist_ok=True, copy_function=os.replace)
        else:
            os.replace(found[0], out)
    finally:
        remove_path(tmp)


def _unlink_copy(out: Path) -> None:
    """When ``out`` links to your folder, make it a copy of that folder (what is merged in never reaches yours)."""
    if out.is_symlink():
        linked = out.resolve()
        out.unlink()
        shutil.copytree(linked, out)
