"""Artifacts of ``weights_manifest.json`` fetched by name: sources tried in order, each file checked before it
replaces anything, installed atomically; when every source fails, one :class:`HRankError` line says what to do."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence

from hrank_ssd.errors import HRankError
from hrank_ssd.io.archives import find_member, unpack_bundle
from hrank_ssd.io.files import install_staged, remove_path
from hrank_ssd.io.manifest import (
    describe_source,
    hand_download_hint,
    load_manifest,
    member_patterns,
    source_link,
)
from hrank_ssd.io.transports import default_transport
from hrank_ssd.io.verify import SourceFailed, file_problem, log, note_source, one_line, sha256sum, tree_size

Check = Callable[[Path, dict], Optional[str]]  # (file, artifact) -> why the file does not fit the artifact, or None


class AllSourcesFailed(Exception):
    """Every source of one artifact failed: ``failures`` (one line each) and a ``hint`` of what to do by hand."""

    def __init__(self, failures: List[str], hint: str):
        super().__init__("; ".join(failures))
        self.failures, self.hint = failures, hint


def fetch(name: str, dest_dir=".", manifest=None, record: bool = False,
          transports: Optional[Mapping[str, Callable]] = None, progress: bool = True,
          check: Optional[Check] = None) -> Path:
    """Make ``dest_dir/<artifact file>`` present and verified; return its path. ``manifest``: a :class:`Manifest`,
    a path, or None for the repository's; ``transports``: ``{source type: callable(source, tmp_path)}`` (tests);
    ``check(file, artifact)``: why a file (a cached one too) does not fit, or None; a failing file is deleted."""
    return fetch_many([name], dest_dir, manifest, record, transports, progress, check)[0]


def fetch_many(names: Sequence[str] = (), dest_dir=".", manifest=None, record: bool = False,
               transports=None, progress: bool = True, check: Optional[Check] = None) -> List[Path]:
    """:func:`fetch` each name (default: every weights and labels artifact); one error line at the end."""
    man = load_manifest(manifest)
    arts = [man.get(n) for n in names or man.names()]  # unknown names fail before anything is downloaded
    fetcher = Fetcher(man, Path(dest_dir), record, transports or {}, progress, check)
    paths, errors = [], []
    for art in arts:
        try:
            paths.append(fetcher.fetch(art))
            continue
        except AllSourcesFailed as e:  # every source's failure and what to do, in one line
            error = HRankError(f"could not download {art['name']!r} ({fetcher.dest / art['file']}): tried "
                               f"{'; '.join(e.failures)}; {e.hint}")
        except HRankError as e:
            error = e
        if len(arts) == 1:
            raise error from None
        log(f"error: {error}")
        errors.append(art["name"])
    if errors:
        raise HRankError(f"{len(errors)} of {len(arts)} downloads failed ({', '.join(errors)}); "
                         "see the lines above for each source tried and what to do")
    return paths


class Fetcher:
    """Artifacts fetched into ``dest``; bundle loops caught, a failed bundle not tried again."""

    def __init__(self, manifest, dest: Path, record: bool = False, transports: Mapping = (), progress: bool = True,
                 check: Optional[Check] = None):
        self.manifest, self.dest, self.record, self.progress = manifest, dest, record, progress
        self.check, self.transports = check, dict(transports)
        self.active: List[str] = []
        self.failed: Dict[str, AllSourcesFailed] = {}

    def problem(self, path: Path, art: dict) -> Optional[str]:
        """Why ``path`` is not a usable copy of ``art``: the manifest's checks, then the caller's ``check``."""
        return file_problem(path, art) or (self.check(path, art) if self.check else None)

    def fetch(self, art: dict) -> Path:
        """``art`` present and verified under ``dest``: kept when already good, else downloaded."""
        name, target = art["name"], self.dest / art["file"]
        if name in self.active:
            raise AllSourcesFailed([f"bundle loop through {' -> '.join(self.active + [name])}"], "fix the manifest")
        reason = self.problem(target, art) if target.exists() else "missing"
        if reason is None:
            how = "verified" if art.get("sha256") or art.get("md5") else "present (no checksum recorded yet)"
            log(f"{name}: {target} already {how}, not downloading")
        else:
            if target.exists():
                log(f"{name}: existing {target} is not usable ({reason}); downloading a new copy "
                    "(the old one stays until the new one is verified)")
            self.active.append(name)
            try:
                self.download(art, target)
            finally:
                self.active.pop()
        if self.record:  # the size and sha256 written into the manifest when they changed
            size, sha = tree_size(target), sha256sum(target)
            if (art.get("size"), art.get("sha256")) != (size, sha):
                self.manifest.record(name, size, sha)
                log(f"{name}: recorded size {size} and sha256 {sha} in {self.manifest.path}")
        if art["kind"] == "bundle":
            unpack_bundle(target, art, self.dest, self.progress)
        return target

    def download(self, art: dict, target: Path) -> None:
        """Install at ``target`` the first source's copy of ``art`` that passes the checks; else AllSourcesFailed."""
        name, failures, sources = art["name"], [], art["sources"]
        for i, src in enumerate(sources):
            label = describe_source(src)
            log(f"{name}: downloading from {label}")
            try:
                staged = self.stage(src, art, target)
                reason = self.problem(staged, art)
                if reason is None:
                    install_staged(staged, target)
                    log(f"{name}: saved {target} (from {label})")
                    note_source(self.dest, name, target, label, source_link(src))
                    return
                remove_path(staged)
                said = f"gave a bad file ({reason}), deleted it"
            except SourceFailed as e:
                reason, said = e, f"failed: {e}"
            failures.append(f"{label}: {reason}")
            log(f"{name}: {label} {said}" + ("; trying the next source" if i + 1 < len(sources) else ""))
        raise AllSourcesFailed(failures or ["no sources listed"],
                               hand_download_hint(self.manifest, art, target, self.dest))

    def stage(self, src: dict, art: dict, target: Path) -> Path:
        """Stage one source of ``art`` beside ``target`` unchecked; a failure leaves only an http ``.part``."""
        kind = src["type"]
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".part") if kind == "http" else target.with_name(f".{target.name}.{kind}.tmp")
        if kind != "http":
            remove_path(tmp)
        try:
            if kind == "bundle":
                return self.from_bundle(src, art, tmp)
            if art.get("members"):
                tmp.mkdir(parents=True, exist_ok=True)
            transport = self.transports.get(kind) or default_transport(kind, art.get("size"), self.progress)
            transport(src, tmp)
            if not tmp.exists():
                raise SourceFailed("the transport wrote no file")
        except Exception as e:  # a transport's own error (requests, gdown, OSError...) is one source's failure
            if kind != "http":
                remove_path(tmp)
            if isinstance(e, SourceFailed) or kind == "bundle":
                raise
            raise SourceFailed(f"{type(e).__name__}: {one_line(e, 200)}") from None
        for m in art.get("members") or []:  # gdown may nest a Drive folder's files one level down
            found = [] if (tmp / m).is_file() else sorted(p for p in tmp.rglob(Path(m).name) if p.is_file())
            if found:
                (tmp / m).parent.mkdir(parents=True, exist_ok=True)
                os.replace(found[0], tmp / m)
        return tmp

    def from_bundle(self, src: dict, art: dict, tmp: Path) -> Path:
        """Stage a bundle source's member at ``tmp``: the bundle fetched (once per run), unpacked, the member linked."""
        bundle = self.manifest.artifacts.get(src["bundle"])
        if bundle is None:
            raise SourceFailed(f"the manifest has no bundle named {src['bundle']!r}")
        try:
            if bundle["name"] in self.failed:
                log(f"{art['name']}: {bundle['name']} already failed in this run, not trying it again")
                raise self.failed[bundle["name"]]
            zip_path = self.fetch(bundle)
        except AllSourcesFailed as e:
            self.failed[bundle["name"]] = e
            raise SourceFailed(f"the bundle could not be downloaded ({'; '.join(e.failures)})") from None
        try:
            root = unpack_bundle(zip_path, bundle, self.dest, self.progress)
        except HRankError as e:
            raise SourceFailed(str(e)) from None
        member = find_member(root, member_patterns(src), src.get("choose"))
        try:
            os.link(member, tmp)
        except OSError:
            shutil.copyfile(member, tmp)
        return tmp
