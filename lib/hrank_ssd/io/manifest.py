"""``weights_manifest.json`` ($HRANK_SSD_MANIFEST overrides): artifacts and their sources."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from hrank_ssd.errors import HRankError
from hrank_ssd.io.files import atomic_write_text
from hrank_ssd.io.verify import one_line

KINDS = ("weights", "labels", "ranks", "bundle", "video", "voc")
SOURCE_TYPES = {  # type: (the key it needs, how progress lines name it, a link to download it by hand)
    "gdrive": ("id", "gdrive file {id}", "https://drive.google.com/file/d/{id}/view"),
    "gdrive_folder": ("id", "gdrive folder {id}", "https://drive.google.com/drive/folders/{id}"),
    "http": ("url", "http {url}", "{url}"),
    "bundle": ("bundle", "bundle {bundle}", ""),
}
DEFAULT_MANIFEST = Path(__file__).resolve().parents[3] / "weights_manifest.json"
MANIFEST_ENV = "HRANK_SSD_MANIFEST"


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
                check_source(src, name, where)
            self.artifacts[name] = art

    def get(self, name: str) -> dict:
        """The artifact called ``name``; an unknown name is an :class:`HRankError` listing the known ones."""
        if name not in self.artifacts:
            raise HRankError(f"unknown artifact {name!r}; known: {', '.join(self.artifacts)} "
                             "(see `python -m hrank_ssd download --list`)")
        return self.artifacts[name]

    def names(self, kinds: Sequence[str] = ("weights", "labels")) -> List[str]:
        """The names of the artifacts of ``kinds``, in manifest order (what ``download`` fetches by default)."""
        return [n for n, a in self.artifacts.items() if a["kind"] in kinds]

    def record(self, name: str, size: int, sha256: str) -> None:
        """Write ``size`` and ``sha256`` of ``name`` into the manifest file (atomically)."""
        art = self.get(name)
        art["size"], art["sha256"] = int(size), sha256
        if self.path is not None:
            atomic_write_text(self.path, json.dumps(self.data, indent=2, ensure_ascii=False) + "\n")


def load_manifest(path=None) -> Manifest:
    """A :class:`Manifest` as given, else read ``path``, else ``$HRANK_SSD_MANIFEST``, else the repository's
    ``weights_manifest.json``."""
    if isinstance(path, Manifest):
        return path
    env = os.environ.get(MANIFEST_ENV)
    path = Path(path) if path is not None else Path(env) if env else DEFAULT_MANIFEST
    if not path.is_file():
        how = f"fix or unset ${MANIFEST_ENV}" if env and str(path) == env else \
            "pass --manifest PATH to the repository's weights_manifest.json"
        raise HRankError(f"manifest {path} not found; {how}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise HRankError(f"manifest {path} is not valid JSON ({one_line(e)}); fix it or restore it from git") from None
    return Manifest(data, path)


def check_source(src, name, where) -> None:
    """A source must be a dict of a known type, with the key that type needs and usable member globs."""
    if not isinstance(src, dict) or src.get("type") not in SOURCE_TYPES:
        raise HRankError(f"{where}: artifact {name!r} has source {src!r}; each source needs a type among "
                         f"{', '.join(SOURCE_TYPES)}")
    need = SOURCE_TYPES[src["type"]][0]
    if not src.get(need):
        raise HRankError(f"{where}: artifact {name!r} has a {src['type']} source without {need!r}")
    member = src.get("member", "*")
    if not member or not all(isinstance(m, str) and m for m in ([member] if isinstance(member, str) else member)):
        raise HRankError(f"{where}: artifact {name!r} has a {src['type']} source whose member is {member!r}; "
                         "give a glob or a list of globs")


def describe_source(src: dict) -> str:
    """A source in a few words for progress and error lines (``http <url>``, ``bundle <name>/<glob>``...)."""
    text, patterns = SOURCE_TYPES[src["type"]][1].format(**src), member_patterns(src)
    if src["type"] == "bundle" or src["type"] == "gdrive_folder" and src.get("member"):
        text += f"/{patterns[0] if len(patterns) == 1 else patterns}"
    return text


def source_link(src: dict) -> str:
    """A link a person can open in a browser to download the source by hand."""
    return SOURCE_TYPES[src["type"]][2].format(**src)


def member_patterns(src: dict) -> List[str]:
    """A bundle's or a Drive folder's member globs, in order (``member`` is one glob or a list; default ``*``)."""
    m = src.get("member", "*")
    return [m] if isinstance(m, str) else list(m)


def list_rows(manifest: Manifest, dest_dir=".") -> List[dict]:
    """One row per artifact for ``download --list``."""
    return [{"name": a["name"], "kind": a["kind"], "net": a.get("net") or "-", "file": a["file"],
             "size": "-" if a.get("size") is None else str(a["size"]), "verified": "yes" if a.get("sha256") else "no",
             "present": "yes" if (Path(dest_dir) / a["file"]).exists() else "no"} for a in manifest.artifacts.values()]


def hand_download_hint(manifest: Manifest, art: dict, target: Path, dest: Path) -> str:
    """What to do by hand: the first source's link (and a Drive link) and where each file goes."""
    rerun = f"then rerun `python -m hrank_ssd download {art['name']} --record`"
    options = []
    for s in art["sources"]:
        if s["type"] == "bundle":
            bundle = manifest.artifacts.get(s["bundle"]) or {"sources": []}
            options += [(source_link(b), dest / bundle["file"], "") for b in bundle["sources"]
                        if b["type"] != "bundle"]
        elif s["type"] == "gdrive_folder" and s.get("member"):
            options.append((source_link(s), target, f"the file {member_patterns(s)[0]} of "))
        else:
            options.append((source_link(s), target, "the files of " if art.get("members") else ""))
    options = list(dict.fromkeys(options))
    drive = [o for o in options[1:] if "drive.google" in o[0]]
    options = options[:1] + (drive or options[1:])[:1]  # the first source, and a Drive link when there is one
    if not options:
        return f"put the file at {target.resolve()} by hand, {rerun}"
    text = " or ".join(f"{what}{link} into {where.resolve()}" for link, where, what in options)
    quota = ("; when Drive says the quota is exceeded, retry in 24 h or copy the file to your own Drive "
             "(docs/downloads.md)") if "drive.google" in text else ""
    return f"download by hand {text}, {rerun}{quota}"
