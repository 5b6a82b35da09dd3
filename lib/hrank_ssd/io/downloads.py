"""Downloads: the weights manifest, Google Drive / HTTP sources, checksums, resumable atomic files.

Every artifact (checkpoint, label file, rank folder, zip bundle) is described in
``weights_manifest.json`` with an ordered list of sources. :func:`fetch` tries them in order:

* ``gdrive`` / ``gdrive_folder``: Google Drive through gdown (quota pages are recognised);
* ``http``: plain HTTP(S) with resume (``Range`` into a ``.part`` file, restart when the server
  ignores it) and a tqdm bar;
* ``bundle``: a member of another artifact, a zip that is unpacked into a cache folder; members
  are matched by glob because the names inside the original project's zip are not documented.

A file is checked (not empty, not an HTML page, size and sha256 when the manifest knows them)
before it replaces anything, so a good file is never lost to a bad download. When every source
fails, one :class:`~hrank_ssd.errors.HRankError` line lists what was tried and what to do.
:func:`download_voc` fetches the PASCAL VOC tars (md5-checked, resumable) with the same code.
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import json
import os
import re
import shutil
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Union

from hrank_ssd.errors import HRankError
from hrank_ssd.io.files import atomic_write_text

KINDS = ("weights", "labels", "ranks", "bundle", "video", "voc")
SOURCE_TYPES = ("gdrive", "gdrive_folder", "http", "bundle")
DEFAULT_MANIFEST = Path(__file__).resolve().parents[3] / "weights_manifest.json"
MANIFEST_ENV = "HRANK_SSD_MANIFEST"
CHUNK = 1 << 20
USER_AGENT = "hrank-ssd-downloader"
UNPACKED_MARKER = ".hrank_ssd_unpacked"
QUOTA_MARKERS = (b"Quota exceeded", b"Too many users have viewed or downloaded")

Transport = Callable[[dict, Path], object]


class _SourceFailed(Exception):
    """One source did not give a usable file; the message is the reason (one line)."""


class _AllFailed(Exception):
    def __init__(self, failures: List[str], hint: str):
        super().__init__("; ".join(failures))
        self.failures, self.hint = failures, hint


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _one_line(text: object, limit: int = 300) -> str:
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 3] + "..."


# ----------------------------------------------------------------------------------------- hashes


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
        lines = "".join(f"{rel} {_hash(path / rel, 'sha256')}\n" for rel in _tree_files(path))
        return hashlib.sha256(lines.encode()).hexdigest()
    return _hash(path, "sha256")


def md5sum(path) -> str:
    return _hash(path, "md5")


def _tree_files(root: Path) -> List[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if p.is_file() and p.name != UNPACKED_MARKER)


def _size(path: Path) -> int:
    return sum((path / rel).stat().st_size for rel in _tree_files(path)) if path.is_dir() else path.stat().st_size


def html_problem(path) -> Optional[str]:
    """Why ``path`` looks like an HTML page served instead of the file (Drive quota...), or None."""
    with open(path, "rb") as f:
        head = f.read(65536)
    start = head.lstrip()[:64].lower()
    quota = any(m in head for m in QUOTA_MARKERS)
    if quota:
        return ("Google Drive served its 'quota exceeded / too many users have downloaded this file' page "
                "instead of the file (the file's daily download quota is spent)")
    if start.startswith(b"<!doctype html") or start.startswith(b"<html"):
        return "the server sent an HTML page instead of the file (a login, virus-scan or error page)"
    return None


# --------------------------------------------------------------------------------------- manifest


class Manifest:
    """The parsed ``weights_manifest.json``; ``path`` is where :meth:`record` writes checksums back."""

    def __init__(self, data: dict, path: Optional[Path] = None):
        self.data, self.path = data, path
        self.artifacts: Dict[str, dict] = {}
        where = path or "manifest"
        arts = data.get("artifacts") if isinstance(data, dict) else None
        if not isinstance(arts, list):
            raise HRankError(f"{where}: expected a JSON object with an 'artifacts' list; see docs/downloads.md")
        for art in arts:
            name = art.get("name") if isinstance(art, dict) else None
            missing = [k for k in ("name", "file", "kind", "sources") if not isinstance(art, dict) or k not in art]
            if missing:
                raise HRankError(f"{where}: artifact {name or art!r} lacks {', '.join(missing)}; see docs/downloads.md")
            if art["kind"] not in KINDS:
                raise HRankError(f"{where}: artifact {name!r} has kind {art['kind']!r}; use one of {', '.join(KINDS)}")
            if name in self.artifacts:
                raise HRankError(f"{where}: artifact name {name!r} appears twice; names must be unique")
            for src in art["sources"]:
                _normalise_source(src, name, where)
            self.artifacts[name] = art

    def get(self, name: str) -> dict:
        if name not in self.artifacts:
            raise HRankError(f"unknown artifact {name!r}; known: {', '.join(self.artifacts)} "
                             "(see `python -m hrank_ssd download --list`)")
        return self.artifacts[name]

    def names(self, kinds: Sequence[str] = ("weights", "labels")) -> List[str]:
        return [n for n, a in self.artifacts.items() if a["kind"] in kinds]

    def record(self, name: str, size: int, sha256: str) -> None:
        """Write ``size`` and ``sha256`` of ``name`` into the manifest file (atomically)."""
        art = self.get(name)
        art["size"], art["sha256"] = int(size), sha256
        if self.path is not None:
            atomic_write_text(self.path, json.dumps(self.data, indent=2, ensure_ascii=False) + "\n")


def load_manifest(path=None) -> Manifest:
    """Read a manifest: ``path``, else ``$HRANK_SSD_MANIFEST`` (a rehearsal's, a private mirror's, one for a user
    behind a proxy: every command and notebook then uses it), else the repository's ``weights_manifest.json``."""
    env = os.environ.get(MANIFEST_ENV)
    path = Path(path) if path is not None else Path(env) if env else DEFAULT_MANIFEST
    if not path.is_file():
        how = f"fix or unset ${MANIFEST_ENV}" if env and str(path) == env else \
            "pass --manifest PATH to the repository's weights_manifest.json"
        raise HRankError(f"manifest {path} not found; {how}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise HRankError(f"manifest {path} is not valid JSON ({_one_line(e)}); fix it or restore it from git") from None
    return Manifest(data, path)


def _as_manifest(manifest) -> Manifest:
    """A :class:`Manifest` as given, else read from a path (None: ``$HRANK_SSD_MANIFEST`` or the repository's)."""
    return manifest if isinstance(manifest, Manifest) else load_manifest(manifest)


def _normalise_source(src, name=None, where="manifest") -> dict:
    """Source dict from a manifest entry; ``"bundle:<bundle>/<glob>"`` strings are accepted too."""
    if isinstance(src, str) and src.startswith("bundle:"):
        bundle, _, member = src[len("bundle:"):].partition("/")
        src = {"type": "bundle", "bundle": bundle, "member": member or "*"}
    if not isinstance(src, dict) or src.get("type") not in SOURCE_TYPES:
        raise HRankError(f"{where}: artifact {name!r} has source {src!r}; each source needs a type among "
                         f"{', '.join(SOURCE_TYPES)}")
    need = {"gdrive": "id", "gdrive_folder": "id", "http": "url", "bundle": "bundle"}[src["type"]]
    if not src.get(need):
        raise HRankError(f"{where}: artifact {name!r} has a {src['type']} source without {need!r}")
    return src


def describe_source(src: dict) -> str:
    t = src["type"]
    if t == "http":
        return f"http {src['url']}"
    if t == "gdrive":
        return f"gdrive file {src['id']}"
    if t == "gdrive_folder":
        return f"gdrive folder {src['id']}"
    return f"bundle {src['bundle']}/{_patterns(src)[0] if len(_patterns(src)) == 1 else _patterns(src)}"


def source_link(src: dict) -> str:
    """A link a person can open in a browser to download the source by hand."""
    if src["type"] == "gdrive":
        return f"https://drive.google.com/file/d/{src['id']}/view"
    if src["type"] == "gdrive_folder":
        return f"https://drive.google.com/drive/folders/{src['id']}"
    return src.get("url", "")


def _patterns(src: dict) -> List[str]:
    m = src.get("member", "*")
    return [m] if isinstance(m, str) else list(m)


# ------------------------------------------------------------------------------------ atomic files


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _install(staged: Path, target: Path) -> None:
    """Put ``staged`` at ``target`` by renames only; the old ``target`` goes only once the new one is in."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if staged.is_dir():
        old = target.with_name(f".{target.name}.old{os.getpid()}")
        if target.exists():
            os.replace(target, old)
        try:
            os.replace(staged, target)
        except OSError:
            if old.exists():
                os.replace(old, target)
            raise
        _remove(old)
    else:
        os.replace(staged, target)


# ------------------------------------------------------------------------------------------- HTTP


def http_download(url: str, part, *, expected_size: Optional[int] = None, progress: bool = True,
                  timeout: float = 60, desc: Optional[str] = None) -> Path:
    """Download ``url`` into ``part``, continuing what is already there when the server honours Range.

    Answers 206: bytes are appended; 200: the server ignored Range, the file restarts from zero.
    A dropped connection leaves ``part`` in place, so the next call resumes it.
    """
    from tqdm.auto import tqdm

    part = Path(part)
    part.parent.mkdir(parents=True, exist_ok=True)
    have = part.stat().st_size if part.exists() else 0
    if expected_size is not None and have > expected_size:
        part.unlink()
        have = 0
    if expected_size is not None and have == expected_size and have > 0:
        return part  # finished earlier but not yet verified and renamed
    headers = {"User-Agent": USER_AGENT}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        # a fresh opener reads the proxy variables now (urlopen's global one keeps those of its first call)
        resp = urllib.request.build_opener().open(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # our .part is at least as long as the file: start again
            part.unlink()
            return http_download(url, part, expected_size=expected_size, progress=progress,
                                 timeout=timeout, desc=desc)
        raise _SourceFailed(f"HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        raise _SourceFailed(f"unreachable ({_one_line(getattr(e, 'reason', e))})") from None
    with resp:
        status = getattr(resp, "status", 200)
        length = resp.headers.get("Content-Length")
        if status == 206:
            m = re.match(r"bytes (\d+)-", resp.headers.get("Content-Range", ""))
            if not m or int(m.group(1)) != have:
                raise _SourceFailed(f"server answered a range that does not start at byte {have}")
            mode, start = "ab", have
            if have:
                _log(f"  resuming {part.name} at {have} bytes")
        else:
            if have:
                _log(f"  {url} ignores HTTP Range: restarting {part.name} from the beginning")
            mode, start = "wb", 0
        total = start + int(length) if length is not None else expected_size
        done = start
        with open(part, mode) as f, tqdm(total=total, initial=start, unit="B", unit_scale=True,
                                         unit_divisor=1024, desc=desc or part.name,
                                         disable=not progress, leave=False) as bar:
            try:
                for block in iter(lambda: resp.read(CHUNK), b""):
                    f.write(block)
                    done += len(block)
                    bar.update(len(block))
            except (OSError, ValueError) as e:
                raise _SourceFailed(f"connection dropped after {done} bytes ({_one_line(e)}); "
                                    f"{part} is kept and the next run resumes it") from None
    if length is not None and done != start + int(length):
        raise _SourceFailed(f"connection dropped after {done} of {start + int(length)} bytes; "
                            f"{part} is kept and the next run resumes it")
    return part


def _http_transport(src: dict, tmp: Path, *, size=None, progress=True) -> None:
    http_download(src["url"], tmp, expected_size=size, progress=progress)


# ----------------------------------------------------------------------------------- Google Drive


def _gdown_reason(e: BaseException) -> str:
    text = str(e)
    if "NameResolution" in text or "Max retries exceeded" in text or type(e).__name__ in (
            "ConnectionError", "ConnectTimeout", "ReadTimeout", "Timeout"):
        return "drive.google.com unreachable (no network connection?)"
    if any(m.decode() in text for m in QUOTA_MARKERS) or "quota" in text.lower():
        return ("Google Drive quota exceeded: too many users have viewed or downloaded this file in the "
                "last 24 h")
    if "Cannot retrieve the public link" in text or "permission" in text.lower():
        return "Google Drive refused the file (not shared publicly, or quota exceeded)"
    return f"gdown failed: {_one_line(text, 200)}"


def _gdrive_transport(src: dict, tmp: Path, *, progress=True) -> None:
    import gdown

    try:
        out = gdown.download(id=src["id"], output=str(tmp), quiet=not progress)
    except Exception as e:  # gdown raises its own FileURLRetrievalError, requests errors...
        raise _SourceFailed(_gdown_reason(e)) from None
    if out is None or not Path(tmp).exists():
        raise _SourceFailed("gdown got no file (Drive quota exceeded, or the file is not shared publicly)")


def _gdrive_folder_transport(src: dict, tmp: Path, *, progress=True) -> None:
    import gdown

    try:
        out = gdown.download_folder(id=src["id"], output=str(tmp), quiet=not progress)
    except Exception as e:
        raise _SourceFailed(_gdown_reason(e)) from None
    if not out:
        raise _SourceFailed("gdown got no files from the folder (Drive quota exceeded, or not shared publicly)")


# ---------------------------------------------------------------------------------------- checks


def _verify(path: Path, art: dict) -> Optional[str]:
    """None when ``path`` is a usable copy of ``art``, else why not (one line)."""
    members = art.get("members")
    if members:
        if not path.is_dir():
            return "not a folder"
        for m in members:
            p = path / m
            if not p.is_file():
                return f"{m} is missing"
            if p.stat().st_size == 0:
                return f"{m} is empty"
            bad = html_problem(p)
            if bad:
                return f"{m}: {bad}"
    else:
        if not path.is_file():
            return "not a file"
        if path.stat().st_size == 0:
            return "empty file"
        bad = html_problem(path)
        if bad:
            return bad
        if art.get("size") is not None and path.stat().st_size != art["size"]:
            return f"size {path.stat().st_size} bytes, expected {art['size']}"
    if art.get("md5"):
        got = md5sum(path)
        if got != art["md5"]:
            return f"md5 {got} does not match the expected {art['md5']}"
    if art.get("sha256"):
        got = sha256sum(path)
        if got != art["sha256"]:
            return f"sha256 {got[:12]}... does not match the manifest's {art['sha256'][:12]}..."
    if art["kind"] == "bundle" and not (zipfile.is_zipfile(path) or tarfile.is_tarfile(path)):
        return "not a zip archive"
    if art["kind"] == "weights":
        return _checkpoint_problem(path)
    return None


def _checkpoint_problem(path: Path) -> Optional[str]:
    """A damaged PyTorch zip checkpoint (torch >= 1.6 format: each tensor a member with a CRC), or None.
    Legacy pickle checkpoints (pytorch-ssd's, 2019) carry no checksum: only a recorded sha256 guards them."""
    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":
            return None
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:  # zlib errors surface as these too
        return f"a damaged PyTorch checkpoint ({_one_line(e, 120)})"
    return f"a damaged PyTorch checkpoint (CRC mismatch in {bad})" if bad else None


def _note_source(root: Path, name: str, path: Path, source: str, url: str) -> None:
    """Where each download came from, in ``root/downloads.json`` (read by the rehearsal's summary and
    useful to anyone asking which mirror a checkpoint came from)."""
    record = root / "downloads.json"
    try:
        known = json.loads(record.read_text(encoding="utf-8")) if record.is_file() else {}
    except ValueError:
        known = {}  # a damaged record is rebuilt, never an error
    known[name] = {"file": os.path.relpath(path, root), "source": source, "url": url, "bytes": _size(path),
                   "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    atomic_write_text(record, json.dumps(known, indent=1) + "\n")


# ------------------------------------------------------------------------------------------ fetch


class _Ctx:
    def __init__(self, manifest: Manifest, dest: Path, record: bool, transports: Mapping, progress: bool):
        self.manifest, self.dest, self.record, self.progress = manifest, dest, record, progress
        self.transports = dict(transports or {})
        self.active: List[str] = []
        self.failed: Dict[str, _AllFailed] = {}  # bundles that failed in this run are not tried again

    def transport(self, kind: str, art: dict) -> Transport:
        if kind in self.transports:
            return self.transports[kind]
        if kind == "http":
            return functools.partial(_http_transport, size=art.get("size"), progress=self.progress)
        if kind == "gdrive":
            return functools.partial(_gdrive_transport, progress=self.progress)
        return functools.partial(_gdrive_folder_transport, progress=self.progress)

    def maybe_record(self, art: dict, path: Path) -> None:
        if not self.record:
            return
        if self.manifest.artifacts.get(art["name"]) is not art:
            _log(f"{art['name']}: not an entry of the manifest, nothing recorded")
            return
        size, sha = _size(path), sha256sum(path)
        if art.get("size") == size and art.get("sha256") == sha:
            return
        self.manifest.record(art["name"], size, sha)
        _log(f"{art['name']}: recorded size {size} and sha256 {sha} in {self.manifest.path}")


def fetch(name_or_artifact: Union[str, dict], dest_dir=".", manifest=None, record: bool = False,
          transports: Optional[Mapping[str, Transport]] = None, progress: bool = True,
          _failed: Optional[Dict[str, _AllFailed]] = None) -> Path:
    """Make ``dest_dir/<artifact file>`` present and verified; return its path.

    ``manifest``: a :class:`Manifest`, a path, or None for the repository's. ``record``: write the
    size and sha256 of the verified file into the manifest. ``transports``: ``{source type:
    callable(source, tmp_path)}`` replacing the real gdown/urllib transports (used by tests).
    Raises :class:`HRankError` (one line: every source tried and why it failed, what to do).
    """
    man = _as_manifest(manifest)
    art = man.get(name_or_artifact) if isinstance(name_or_artifact, str) else name_or_artifact
    ctx = _Ctx(man, Path(dest_dir), record, transports or {}, progress)
    if _failed is not None:
        ctx.failed = _failed
    try:
        return _fetch(art, ctx)
    except _AllFailed as e:
        raise HRankError(f"could not download {art['name']!r} ({ctx.dest / art['file']}): tried "
                         f"{'; '.join(e.failures)}; {e.hint}") from None


def fetch_many(names: Sequence[str] = (), dest_dir=".", manifest=None, record: bool = False,
               transports=None, progress: bool = True) -> List[Path]:
    """:func:`fetch` each name (default: every weights and labels artifact); one error line at the end."""
    man = _as_manifest(manifest)
    names = list(names) or man.names()
    for n in names:
        man.get(n)  # unknown names fail before anything is downloaded
    paths, errors, failed = [], [], {}
    for n in names:
        try:
            paths.append(fetch(n, dest_dir, man, record=record, transports=transports, progress=progress,
                               _failed=failed))
        except HRankError as e:
            if len(names) == 1:
                raise
            _log(f"error: {e}")
            errors.append(n)
    if errors:
        raise HRankError(f"{len(errors)} of {len(names)} downloads failed ({', '.join(errors)}); "
                         "see the lines above for each source tried and what to do")
    return paths


def _fetch(art: dict, ctx: _Ctx) -> Path:
    name = art["name"]
    if name in ctx.active:
        raise _AllFailed([f"bundle loop through {' -> '.join(ctx.active + [name])}"], "fix the manifest")
    target = ctx.dest / art["file"]
    if target.exists():
        reason = _verify(target, art)
        if reason is None:
            how = "verified" if art.get("sha256") else "present (no checksum recorded yet)"
            _log(f"{name}: {target} already {how}, not downloading")
            ctx.maybe_record(art, target)
            if art["kind"] == "bundle":
                _unpack(target, art, ctx)
            return target
        _log(f"{name}: existing {target} is not usable ({reason}); downloading a new copy "
             "(the old one stays until the new one is verified)")
    ctx.active.append(name)
    try:
        return _fetch_sources(art, target, ctx)
    finally:
        ctx.active.pop()


def _fetch_sources(art: dict, target: Path, ctx: _Ctx) -> Path:
    name, failures = art["name"], []
    sources = [_normalise_source(s, name) for s in art["sources"]]
    for i, src in enumerate(sources):
        label = describe_source(src)
        more = "; trying the next source" if i + 1 < len(sources) else ""
        _log(f"{name}: downloading from {label}")
        staged = None
        try:
            staged = _run_source(src, art, target, ctx)
            reason = _verify(staged, art)
        except _SourceFailed as e:
            reason = str(e)
            if src["type"] != "http" and staged is None:
                _remove(_tmp_path(target, src["type"]))
            failures.append(f"{label}: {reason}")
            _log(f"{name}: {label} failed: {reason}{more}")
            continue
        if reason is not None:
            _remove(staged)
            failures.append(f"{label}: {reason}")
            _log(f"{name}: {label} gave a bad file ({reason}), deleted it{more}")
            continue
        _install(staged, target)
        _log(f"{name}: saved {target} (from {label})")
        _note_source(ctx.dest, name, target, label, source_link(src))
        ctx.maybe_record(art, target)
        if art["kind"] == "bundle":
            _unpack(target, art, ctx)
        return target
    if not sources:
        failures.append("no sources listed")
    raise _AllFailed(failures, _hint(art, target, ctx))


def _tmp_path(target: Path, kind: str) -> Path:
    if kind == "http":
        return target.with_name(target.name + ".part")
    return target.with_name(f".{target.name}.{kind}.tmp")


def _run_source(src: dict, art: dict, target: Path, ctx: _Ctx) -> Path:
    kind = src["type"]
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(target, kind)
    if kind == "bundle":
        return _from_bundle(src, art, target, ctx)
    if kind != "http":
        _remove(tmp)
    if art.get("members"):
        tmp.mkdir(parents=True, exist_ok=True)
    try:
        ctx.transport(kind, art)(src, tmp)
    except _SourceFailed:
        raise
    except Exception as e:  # a transport's own error (requests, gdown, OSError...) is one source's failure
        raise _SourceFailed(f"{type(e).__name__}: {_one_line(e, 200)}") from None
    if not tmp.exists():
        raise _SourceFailed("the transport wrote no file")
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


def _hint(art: dict, target: Path, ctx: _Ctx) -> str:
    """What to do by hand: the first source's link (and a Drive link) and where each file goes."""
    rerun = f"then rerun `python -m hrank_ssd download {art['name']} --record`"
    options = []
    for s in art["sources"]:
        s = _normalise_source(s, art["name"])
        if s["type"] == "bundle":
            bundle = ctx.manifest.artifacts.get(s["bundle"])
            for b in (bundle or {}).get("sources", []):
                b = _normalise_source(b, bundle["name"])
                if b["type"] != "bundle":
                    options.append((source_link(b), ctx.dest / bundle["file"], False))
        else:
            options.append((source_link(s), target, bool(art.get("members"))))
    options = list(dict.fromkeys(options))
    drive = [o for o in options[1:] if "drive.google" in o[0]]
    options = options[:1] + (drive or options[1:])[:1]  # the first source, and a Drive link when there is one
    if not options:
        return f"put the file at {target.resolve()} by hand, {rerun}"
    text = " or ".join(f"{'the files of ' if folder else ''}{link} into {where.resolve()}"
                       for link, where, folder in options)
    quota = ("; when Drive says the quota is exceeded, retry in 24 h or copy the file to your own Drive "
             "(docs/downloads.md)") if "drive.google" in text else ""
    return f"download by hand {text}, {rerun}{quota}"


# ---------------------------------------------------------------------------------------- bundles


def unpacked_dir(zip_path: Path, art: dict, dest: Path) -> Path:
    return dest / art["unpack_to"] if art.get("unpack_to") else zip_path.with_suffix("")


def _unpack(zip_path: Path, art: dict, ctx: _Ctx) -> Path:
    out = unpacked_dir(zip_path, art, ctx.dest)
    stamp = f"{zip_path.stat().st_size} {sha256sum(zip_path)}"
    marker = out / UNPACKED_MARKER
    if marker.is_file() and marker.read_text().strip() == stamp:
        return out
    tmp = out.with_name(f".{out.name}.unpack{os.getpid()}")
    _remove(tmp)
    tmp.mkdir(parents=True)
    try:
        extract_archive(zip_path, tmp)
        (tmp / UNPACKED_MARKER).write_text(stamp + "\n")
        _install(tmp, out)
    finally:
        _remove(tmp)
    _log(f"{art['name']}: unpacked {zip_path.name} into {out}")
    return out


def extract_archive(archive, out, progress: bool = False) -> None:
    """Unpack a zip or tar into ``out`` (members cannot escape ``out``), with a bar of files when ``progress``."""
    from tqdm.auto import tqdm

    archive, out = Path(archive), Path(out)
    bar = functools.partial(tqdm, desc=f"extract {archive.name}", unit="file", disable=not progress)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as z:
                for m in bar(z.infolist()):
                    z.extract(m, out)  # zipfile drops absolute paths and '..' itself
            return
        with tarfile.open(archive) as t:
            members = t.getmembers()
            if hasattr(tarfile, "data_filter"):
                extract = functools.partial(t.extract, path=out, filter="data")
            else:  # Pythons without extraction filters: refuse what the "data" filter would refuse
                root = out.resolve()
                for m in members:
                    if not (root / m.name).resolve().is_relative_to(root) or m.issym() or m.islnk():
                        raise HRankError(f"{archive} holds an unsafe member {m.name!r}; delete it and download again")
                extract = functools.partial(t.extract, path=out)
            for m in bar(members):
                extract(m)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as e:
        raise HRankError(f"{archive} is a damaged archive ({_one_line(e)}); delete it and download again") from None


def _from_bundle(src: dict, art: dict, target: Path, ctx: _Ctx) -> Path:
    bundle = ctx.manifest.artifacts.get(src["bundle"])
    if bundle is None:
        raise _SourceFailed(f"the manifest has no bundle named {src['bundle']!r}")
    try:
        if bundle["name"] in ctx.failed:
            _log(f"{art['name']}: {bundle['name']} already failed in this run, not trying it again")
            raise ctx.failed[bundle["name"]]
        zip_path = _fetch(bundle, ctx)
    except _AllFailed as e:
        ctx.failed[bundle["name"]] = e
        raise _SourceFailed(f"the bundle could not be downloaded ({'; '.join(e.failures)})") from None
    try:
        root = _unpack(zip_path, bundle, ctx)
    except HRankError as e:
        raise _SourceFailed(str(e)) from None
    member = find_member(root, _patterns(src), src.get("choose"))
    tmp = _tmp_path(target, "bundle")
    _remove(tmp)
    try:
        os.link(member, tmp)
    except OSError:
        shutil.copyfile(member, tmp)
    return tmp


def find_member(root: Path, patterns: Sequence[str], choose: Optional[str] = None) -> Path:
    """The one file under ``root`` matching the first pattern that matches anything.

    A pattern is matched (case-insensitively) against the relative path and the file name.
    ``choose="lowest-loss"`` picks, among several matches, the ``...-Loss-<x>.pth`` with the lowest x.
    """
    files = [f for f in _tree_files(root)
             if not f.startswith("__MACOSX/") and not Path(f).name.startswith("._")]
    for pat in patterns:
        p = pat.lower()
        hits = [f for f in files if fnmatch.fnmatchcase(f.lower(), p) or fnmatch.fnmatchcase(Path(f).name.lower(), p)]
        if len(hits) == 1:
            return root / hits[0]
        if hits and choose == "lowest-loss":
            def loss(f):
                m = re.search(r"loss-([0-9]+(?:\.[0-9]+)?)", Path(f).name.lower())
                return float(m.group(1)) if m else float("inf")

            return root / min(hits, key=loss)
        if hits:
            raise _SourceFailed(f"pattern {pat!r} matches several members ({', '.join(hits[:6])}); "
                                "set the source's member to one of them in the manifest")
    listing = ", ".join(files[:12]) + (", ..." if len(files) > 12 else "")
    raise _SourceFailed(f"no member matches {' or '.join(map(repr, patterns))} (it holds: {listing or 'nothing'}); "
                        "set the source's member glob in the manifest")


# ------------------------------------------------------------------------------------- generic URL


def download_url(urls: Sequence[str], dest, *, md5: Optional[str] = None, sha256: Optional[str] = None,
                 size: Optional[int] = None, progress: bool = True, what: Optional[str] = None) -> Path:
    """Download the first of ``urls`` that gives a file with the right checksum to ``dest`` (atomic).

    An existing ``dest`` with the right checksum is kept; a ``dest.part`` is resumed.
    """
    dest = Path(dest)
    what = what or dest.name

    expected = {"kind": "file", "size": size, "md5": md5, "sha256": sha256}  # checked like a manifest artifact

    if dest.is_file():
        reason = _verify(dest, expected)
        if reason is None:
            _log(f"{what}: {dest} already present and verified, not downloading")
            return dest
        _log(f"{what}: existing {dest} is not usable ({reason}); downloading a new copy")
    part = dest.with_name(dest.name + ".part")
    failures = []
    for i, url in enumerate(urls):
        more = "; trying the next mirror" if i + 1 < len(urls) else ""
        _log(f"{what}: downloading from {url}")
        try:
            http_download(url, part, expected_size=size, progress=progress, desc=dest.name)
        except _SourceFailed as e:
            failures.append(f"{url}: {e}")
            _log(f"{what}: {url} failed: {e}{more}")
            continue
        reason = _verify(part, expected)
        if reason is not None:
            part.unlink()
            failures.append(f"{url}: {reason}")
            _log(f"{what}: {url} gave a bad file ({reason}), deleted it{more}")
            continue
        os.replace(part, dest)
        _note_source(dest.parent, dest.name, dest, f"http {url}", url)
        return dest
    check = f" (md5 {md5})" if md5 else ""
    raise HRankError(f"could not download {what}: tried {'; '.join(failures) or 'no mirrors'}; download it "
                     f"by hand from any mirror into {dest.resolve()}{check} and rerun, or pass --mirror URL")


# -------------------------------------------------------------------------------------------- VOC

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
    man = _as_manifest(manifest)
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
    man = _as_manifest(manifest)
    for name in sets:
        year, tar, folder = VOC_SETS[name]
        folder = test_dir if name == "2007-test" else folder
        marker = devkit / f".complete-{name}-{folder}"
        if marker.is_file() and (devkit / folder).is_dir():
            _log(f"VOC {name}: {devkit / folder} already extracted")
            continue
        art = voc_artifact(name, man)
        urls = voc_urls(year, tar, mirrors) + [s["url"] for s in art["sources"] if s["type"] == "http"]
        tar_path = download_url(urls, dest / tar, md5=art.get("md5"), sha256=art.get("sha256"), size=art.get("size"),
                                progress=progress, what=f"VOC {name}")
        tmp = dest / f".extract-{name}"
        _remove(tmp)
        tmp.mkdir(parents=True)
        try:
            extract_archive(tar_path, tmp, progress=progress)
            found = sorted(p for p in tmp.rglob(f"VOC{year}") if p.is_dir())
            if not found:
                raise HRankError(f"{tar_path} holds no VOC{year} folder; delete it and download again")
            devkit.mkdir(parents=True, exist_ok=True)
            _merge_tree(found[0], devkit / folder)
        finally:
            _remove(tmp)
        marker.write_text((art.get("md5") or "") + "\n")
        _log(f"VOC {name}: extracted into {devkit / folder}")
        if not keep_tars:
            tar_path.unlink()
    return devkit


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


def list_rows(manifest: Manifest, dest_dir=".") -> List[dict]:
    """One row per artifact for ``download --list``."""
    rows = []
    for art in manifest.artifacts.values():
        rows.append({"name": art["name"], "kind": art["kind"], "net": art.get("net") or "-",
                     "file": art["file"], "size": "-" if art.get("size") is None else str(art["size"]),
                     "verified": "yes" if art.get("sha256") else "no",
                     "present": "yes" if (Path(dest_dir) / art["file"]).exists() else "no"})
    return rows


__all__ = ["Manifest", "load_manifest", "fetch", "fetch_many", "sha256sum", "md5sum", "http_download",
           "download_url", "download_voc", "extract_archive", "find_member", "html_problem", "list_rows",
           "VOC_SETS", "voc_artifact"]
