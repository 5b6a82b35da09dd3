"""Artifacts of ``weights_manifest.json`` fetched by name: sources tried in order, each file checked before it
replaces anything, installed atomically; when every source fails, one :class:`HRankError` line says what to do."""

from __future__ import annotations

import functools
import os
import shutil
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Union

from hrank_ssd.errors import HRankError
from hrank_ssd.io.archives import find_member, unpack_bundle
from hrank_ssd.io.files import install_staged, remove_path
from hrank_ssd.io.manifest import (
    Manifest,
    as_manifest,
    describe_source,
    hand_download_hint,
    member_patterns,
    normalise_source,
    source_link,
)
from hrank_ssd.io.transports import default_transport, first_good, part_path
from hrank_ssd.io.verify import SourceFailed, file_problem, log, note_source, one_line, sha256sum, tree_size

Transport = Callable[[dict, Path], object]
Check = Callable[[Path, dict], Optional[str]]  # (file, artifact) -> why the file does not fit the artifact, or None


class _AllFailed(Exception):
    """Every source of one artifact failed: ``failures`` (one line each) and a ``hint`` of what to do by hand."""

    def __init__(self, failures: List[str], hint: str):
        super().__init__("; ".join(failures))
        self.failures, self.hint = failures, hint


class _Ctx:
    """One :func:`fetch` or :func:`fetch_many` call's state (``active``: the artifacts being fetched, to catch
    bundle loops; ``failed``: the bundles that failed, not tried again)."""

    def __init__(self, manifest: Manifest, dest: Path, record: bool, transports: Mapping, progress: bool,
                 check: Optional[Check]):
        self.manifest, self.dest, self.record, self.progress = manifest, dest, record, progress
        self.check, self.transports = check, dict(transports)
        self.active: List[str] = []
        self.failed: Dict[str, _AllFailed] = {}

    def fetch(self, art: dict) -> Path:
        """:func:`_fetch`, every source's failure and what to do in one :class:`HRankError` line."""
        try:
            return _fetch(art, self)
        except _AllFailed as e:
            raise HRankError(f"could not download {art['name']!r} ({self.dest / art['file']}): tried "
                             f"{'; '.join(e.failures)}; {e.hint}") from None

    def problem(self, path: Path, art: dict) -> Optional[str]:
        """Why ``path`` is not a usable copy of ``art``: the manifest's checks, then the caller's ``check``."""
        return file_problem(path, art) or (self.check(path, art) if self.check else None)

    def maybe_record(self, art: dict, path: Path) -> None:
        """With ``record``, write the size and sha256 of ``path`` into the manifest when they changed."""
        if not self.record:
            return
        if self.manifest.artifacts.get(art["name"]) is not art:
            log(f"{art['name']}: not an entry of the manifest, nothing recorded")
            return
        size, sha = tree_size(path), sha256sum(path)
        if art.get("size") == size and art.get("sha256") == sha:
            return
        self.manifest.record(art["name"], size, sha)
        log(f"{art['name']}: recorded size {size} and sha256 {sha} in {self.manifest.path}")


def fetch(name_or_artifact: Union[str, dict], dest_dir=".", manifest=None, record: bool = False,
          transports: Optional[Mapping[str, Transport]] = None, progress: bool = True,
          check: Optional[Check] = None) -> Path:
    """Make ``dest_dir/<artifact file>`` present and verified; return its path. ``manifest``: a :class:`Manifest`,
    a path, or None for the repository's; ``transports``: ``{source type: callable(source, tmp_path)}`` (tests);
    ``check(file, artifact)``: why a file (a cached one too) does not fit, or None; a failing file is deleted."""
    man = as_manifest(manifest)
    art = man.get(name_or_artifact) if isinstance(name_or_artifact, str) else name_or_artifact
    return _Ctx(man, Path(dest_dir), record, transports or {}, progress, check).fetch(art)


def fetch_many(names: Sequence[str] = (), dest_dir=".", manifest=None, record: bool = False,
               transports=None, progress: bool = True, check: Optional[Check] = None) -> List[Path]:
    """:func:`fetch` each name (default: every weights and labels artifact); one error line at the end."""
    man = as_manifest(manifest)
    names = list(names) or man.names()
    arts = [man.get(n) for n in names]  # unknown names fail before anything is downloaded
    ctx = _Ctx(man, Path(dest_dir), record, transports or {}, progress, check)
    paths, errors = [], []
    for art in arts:
        try:
            paths.append(ctx.fetch(art))
        except HRankError as e:
            if len(names) == 1:
                raise
            log(f"error: {e}")
            errors.append(art["name"])
    if errors:
        raise HRankError(f"{len(errors)} of {len(names)} downloads failed ({', '.join(errors)}); "
                         "see the lines above for each source tried and what to do")
    return paths


def _fetch(art: dict, ctx: _Ctx) -> Path:
    """``art`` present and verified under ``ctx.dest``: kept when already good, else from the first of its
    sources that gives a file passing the checks."""
    name, target = art["name"], ctx.dest / art["file"]
    if name in ctx.active:
        raise _AllFailed([f"bundle loop through {' -> '.join(ctx.active + [name])}"], "fix the manifest")
    reason = ctx.problem(target, art) if target.exists() else "missing"
    if reason is None:
        how = "verified" if art.get("sha256") else "present (no checksum recorded yet)"
        log(f"{name}: {target} already {how}, not downloading")
    else:
        if target.exists():
            log(f"{name}: existing {target} is not usable ({reason}); downloading a new copy "
                "(the old one stays until the new one is verified)")
        sources, failures = [normalise_source(s, name) for s in art["sources"]], []
        attempts = [(describe_source(s), functools.partial(_run_source, s, art, target, ctx))
                    for s in sources]
        ctx.active.append(name)
        try:
            good = first_good(name, attempts, lambda path: ctx.problem(path, art), failures)
        finally:
            ctx.active.pop()
        if good is None:
            hint = hand_download_hint(ctx.manifest, art, target, ctx.dest)
            raise _AllFailed(failures or ["no sources listed"], hint)
        install_staged(good[1], target)
        log(f"{name}: saved {target} (from {attempts[good[0]][0]})")
        note_source(ctx.dest, name, target, attempts[good[0]][0], source_link(sources[good[0]]))
    ctx.maybe_record(art, target)
    if art["kind"] == "bundle":
        unpack_bundle(target, art, ctx.dest, ctx.progress)
    return target


def _run_source(src: dict, art: dict, target: Path, ctx: _Ctx) -> Path:
    """Stage one source of ``art`` beside ``target``, not yet checked; a failed one leaves no temporary file but
    an http ``.part`` (the next run resumes it)."""
    kind = src["type"]
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = part_path(target) if kind == "http" else target.with_name(f".{target.name}.{kind}.tmp")
    if kind != "http":
        remove_path(tmp)
    try:
        if kind == "bundle":
            return _from_bundle(src, art, tmp, ctx)
        if art.get("members"):
            tmp.mkdir(parents=True, exist_ok=True)
        transport = ctx.transports.get(kind) or default_transport(kind, art.get("size"), ctx.progress)
        transport(src, tmp)
        if not tmp.exists():
            raise SourceFailed("the transport wrote no file")
    except Exception as e:  # a transport's own error (requests, gdown, OSError...) is one source's failure
        if kind != "http":
            remove_path(tmp)
        if isinstance(e, SourceFailed) or kind == "bundle":
            raise
        raise SourceFailed(f"{type(e).__name__}: {one_line(e, 200)}") from None
    if art.get("members"):
        _gather_members(tmp, art["members"])
    return tmp


def _gather_members(folder: Path, members: Sequence[str]) -> None:
    """gdown may nest a Drive folder's files one level down: move expected members to the top."""
    for m in members:
        if (folder / m).is_file():
            continue
        found = sorted(p for p in folder.rglob(Path(m).name) if p.is_file())
        if found:
            (folder / m).parent.mkdir(parents=True, exist_ok=True)
            os.replace(found[0], folder / m)


def _from_bundle(src: dict, art: dict, tmp: Path, ctx: _Ctx) -> Path:
    """Stage the member of a bundle source at ``tmp``: the bundle fetched (once per run), unpacked, its member linked."""
    bundle = ctx.manifest.artifacts.get(src["bundle"])
    if bundle is None:
        raise SourceFailed(f"the manifest has no bundle named {src['bundle']!r}")
    try:
        if bundle["name"] in ctx.failed:
            log(f"{art['name']}: {bundle['name']} already failed in this run, not trying it again")
            raise ctx.failed[bundle["name"]]
        zip_path = _fetch(bundle, ctx)
    except _AllFailed as e:
        ctx.failed[bundle["name"]] = e
        raise SourceFailed(f"the bundle could not be downloaded ({'; '.join(e.failures)})") from None
    try:
        root = unpack_bundle(zip_path, bundle, ctx.dest, ctx.progress)
    except HRankError as e:
        raise SourceFailed(str(e)) from None
    member = find_member(root, member_patterns(src), src.get("choose"))
    try:
        os.link(member, tmp)
    except OSError:
        shutil.copyfile(member, tmp)
    return tmp
