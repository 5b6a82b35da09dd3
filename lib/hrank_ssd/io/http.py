"""Plain HTTP(S) downloads: resumable ``.part`` files (Range), a tqdm bar, and mirrors tried in order."""

from __future__ import annotations

import os
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional, Sequence, Tuple

from tqdm.auto import tqdm

from hrank_ssd.errors import HRankError
from hrank_ssd.io.messages import SourceFailed, log, one_line
from hrank_ssd.io.provenance import note_source
from hrank_ssd.io.verify import CHUNK, file_problem

USER_AGENT = "hrank-ssd-downloader"
TIMEOUT = 20.0  # seconds a connection or read may stall before the mirror counts as failed (dead VOC hosts stall)


def part_path(dest: Path) -> Path:
    """Where ``dest`` is downloaded before it is checked: ``<dest>.part``, kept between runs to resume."""
    return dest.with_name(dest.name + ".part")


def http_download(url: str, part, *, expected_size: Optional[int] = None, progress: bool = True,
                  timeout: float = TIMEOUT, desc: Optional[str] = None) -> Path:
    """Download ``url`` into ``part``, resuming it where the server honours Range; a dropped connection keeps it."""
    part = Path(part)
    part.parent.mkdir(parents=True, exist_ok=True)
    have = part.stat().st_size if part.exists() else 0
    if expected_size is not None and have > expected_size:
        part.unlink()
        have = 0
    if expected_size is not None and have == expected_size and have > 0:
        return part  # finished earlier but not yet verified and renamed
    resp = _open(url, have, timeout)
    if resp is None:  # 416: our .part is at least as long as the file: start again
        part.unlink()
        return http_download(url, part, expected_size=expected_size, progress=progress, timeout=timeout, desc=desc)
    with resp:
        mode, start = _write_mode(resp, url, part, have)
        length = resp.headers.get("Content-Length")
        total = start + int(length) if length is not None else expected_size
        done = _copy(resp, part, mode, start, total, desc or part.name, progress)
    if length is not None and done != start + int(length):
        raise SourceFailed(f"connection dropped after {done} of {start + int(length)} bytes; "
                           f"{part} is kept and the next run resumes it")
    return part


def _open(url: str, have: int, timeout: float):
    """The response to a GET of ``url`` from byte ``have``; None when the server answers 416 to that range."""
    headers = {"User-Agent": USER_AGENT}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        # a fresh opener reads the proxy variables now (urlopen's global one keeps those of its first call)
        return urllib.request.build_opener().open(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:
            return None
        raise SourceFailed(f"HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        raise SourceFailed(f"unreachable ({one_line(getattr(e, 'reason', e))})") from None


def _write_mode(resp, url: str, part: Path, have: int) -> Tuple[str, int]:
    """``("ab", have)`` when the server sends the rest (206 from byte ``have``), else ``("wb", 0)``."""
    if getattr(resp, "status", 200) == 206:
        m = re.match(r"bytes (\d+)-", resp.headers.get("Content-Range", ""))
        if not m or int(m.group(1)) != have:
            raise SourceFailed(f"server answered a range that does not start at byte {have}")
        if have:
            log(f"  resuming {part.name} at {have} bytes")
        return "ab", have
    if have:
        log(f"  {url} ignores HTTP Range: restarting {part.name} from the beginning")
    return "wb", 0


def _copy(resp, part: Path, mode: str, start: int, total: Optional[int], desc: str, progress: bool) -> int:
    """Write the body of ``resp`` into ``part``; return the bytes ``part`` then holds."""
    done = start
    with open(part, mode) as f, tqdm(total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024,
                                     desc=desc, disable=not progress, leave=False) as bar:
        try:
            for block in iter(lambda: resp.read(CHUNK), b""):
                f.write(block)
                done += len(block)
                bar.update(len(block))
        except (OSError, ValueError) as e:
            raise SourceFailed(f"connection dropped after {done} bytes ({one_line(e)}); "
                               f"{part} is kept and the next run resumes it") from None
    return done


def http_transport(src: dict, tmp: Path, *, size: Optional[int] = None, progress: bool = True) -> None:
    """The ``http`` source of a manifest artifact into ``tmp`` (its ``.part`` file, so it resumes)."""
    http_download(src["url"], tmp, expected_size=size, progress=progress)


def download_url(urls: Sequence[str], dest, *, md5: Optional[str] = None, sha256: Optional[str] = None,
                 size: Optional[int] = None, progress: bool = True, what: Optional[str] = None,
                 hint: Optional[str] = None) -> Path:
    """Download the first of ``urls`` with the right checksum to ``dest`` (atomic; a good ``dest`` kept, a
    ``dest.part`` resumed); else one :class:`HRankError` line: each URL, why, then ``hint``."""
    dest = Path(dest)
    what = what or dest.name
    expected = {"kind": "file", "size": size, "md5": md5, "sha256": sha256}  # checked like a manifest artifact
    if dest.is_file():
        reason = file_problem(dest, expected)
        if reason is None:
            log(f"{what}: {dest} already present and verified, not downloading")
            return dest
        log(f"{what}: existing {dest} is not usable ({reason}); downloading a new copy")
    part = part_path(dest)
    failures = []
    for i, url in enumerate(urls):
        more = "; trying the next mirror" if i + 1 < len(urls) else ""
        log(f"{what}: downloading from {url}")
        try:
            http_download(url, part, expected_size=size, progress=progress, desc=dest.name)
        except SourceFailed as e:
            failures.append(f"{url}: {e}")
            log(f"{what}: {url} failed: {e}{more}")
            continue
        reason = file_problem(part, expected)
        if reason is not None:
            part.unlink()
            failures.append(f"{url}: {reason}")
            log(f"{what}: {url} gave a bad file ({reason}), deleted it{more}")
            continue
        os.replace(part, dest)
        note_source(dest.parent, dest.name, dest, f"http {url}", url)
        return dest
    check = f" (md5 {md5})" if md5 else ""
    hint = hint or f"download it by hand from any mirror into {dest.resolve()}{check} and rerun, or pass --mirror URL"
    raise HRankError(f"could not download {what}: tried {'; '.join(failures) or 'no mirrors'}; {hint}")
