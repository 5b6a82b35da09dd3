"""How a source's bytes arrive: HTTP(S) with resumable ``.part`` files (Range), Google Drive files and folders
through gdown (5.2.2 and 6), each failure in one line."""

from __future__ import annotations

import functools
import inspect
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Optional

from hrank_ssd.io.archives import match_member
from hrank_ssd.io.manifest import member_patterns
from hrank_ssd.io.verify import CHUNK, QUOTA_MARKERS, SourceFailed, log, one_line
from hrank_ssd.progress import tqdm

FOLDER_REFUSED = "Google Drive refused to list the folder (not shared publicly, moved, or too many accesses)"
TIMEOUT = 20.0  # seconds a connection or read may stall before the mirror counts as failed (dead VOC hosts stall)


def http_download(url: str, part, *, expected_size: Optional[int] = None, progress: bool = True) -> Path:
    """Download ``url`` into ``part``, resuming it where the server honours Range; a dropped connection keeps it."""
    part = Path(part)
    part.parent.mkdir(parents=True, exist_ok=True)
    have = part.stat().st_size if part.exists() else 0
    if have and have == expected_size:
        return part  # finished earlier but not yet verified and renamed
    if expected_size is not None and have > expected_size:
        part.unlink()
        have = 0
    resp = _open(url, have)
    if resp is None:  # 416: our .part is at least as long as the file: start again
        part.unlink()
        return http_download(url, part, expected_size=expected_size, progress=progress)
    with resp:
        mode, start = "wb", 0
        if getattr(resp, "status", 200) == 206:  # the server sends the rest
            m = re.match(r"bytes (\d+)-", resp.headers.get("Content-Range", ""))
            if not m or int(m.group(1)) != have:
                raise SourceFailed(f"server answered a range that does not start at byte {have}")
            if have:
                log(f"  resuming {part.name} at {have} bytes")
            mode, start = "ab", have
        elif have:
            log(f"  {url} ignores HTTP Range: restarting {part.name} from the beginning")
        length = resp.headers.get("Content-Length")
        total = start + int(length) if length is not None else expected_size
        done = start
        with open(part, mode) as f, tqdm(total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024,
                                         desc=part.name, disable=not progress, leave=False) as bar:
            try:
                for block in iter(lambda: resp.read(CHUNK), b""):
                    f.write(block)
                    done += len(block)
                    bar.update(len(block))
            except (OSError, ValueError) as e:
                raise SourceFailed(f"connection dropped after {done} bytes ({one_line(e)}); "
                                   f"{part} is kept and the next run resumes it") from None
    if length is not None and done != start + int(length):
        raise SourceFailed(f"connection dropped after {done} of {start + int(length)} bytes; "
                           f"{part} is kept and the next run resumes it")
    return part


def _open(url: str, have: int):
    """The response to a GET of ``url`` from byte ``have``; None when the server answers 416 to that range."""
    headers = {"User-Agent": "hrank-ssd-downloader"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        # a fresh opener reads the proxy variables now (urlopen's global one keeps those of its first call)
        return urllib.request.build_opener().open(urllib.request.Request(url, headers=headers), timeout=TIMEOUT)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:
            return None
        raise SourceFailed(f"HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        raise SourceFailed(f"unreachable ({one_line(getattr(e, 'reason', e))})") from None


def default_transport(kind: str, size: Optional[int], progress: bool) -> Callable[[dict, Path], None]:
    """The callable ``(source, tmp)`` that downloads a ``kind`` source: urllib for http, else gdown."""
    if kind == "http":
        return lambda src, tmp: http_download(src["url"], tmp, expected_size=size, progress=progress)
    return functools.partial(gdrive_transport if kind == "gdrive" else gdrive_folder_transport, progress=progress)


def gdown_reason(e: BaseException) -> str:
    """What a gdown exception means for the user, in one line."""
    text = str(e)
    if "NameResolution" in text or "Max retries exceeded" in text or type(e).__name__ in (
            "ConnectionError", "ConnectTimeout", "ReadTimeout", "Timeout"):
        return "drive.google.com unreachable (no network connection?)"
    if any(m.decode() in text for m in QUOTA_MARKERS) or "quota" in text.lower():
        return "Google Drive quota exceeded: too many users have viewed or downloaded this file in the last 24 h"
    if "folder contents" in text or "folder information" in text:  # gdown 6's and gdown 5's words
        return FOLDER_REFUSED
    if "Cannot retrieve the public link" in text or "permission" in text.lower():
        return "Google Drive refused the file (not shared publicly, or quota exceeded)"
    if isinstance(e, TypeError) and "skip_download" in text:
        return "this gdown cannot list a Drive folder without downloading it: pip install -U gdown"
    return f"gdown failed: {one_line(text, 200)}"


def _gdown(call: str, empty: str, **kwargs):
    """``gdown.<call>(**kwargs)``; a failure, or no answer (``empty`` says why), is one :class:`SourceFailed`
    line. gdown, with requests and BeautifulSoup, loads only when a Drive source is tried."""
    import gdown

    fn = getattr(gdown, call)
    if kwargs.get("skip_download") and "remaining_ok" in inspect.signature(fn).parameters:
        kwargs["remaining_ok"] = True  # gdown 5 refuses a folder listing of 50 files unless told the 50 will do
    try:
        out = fn(**kwargs)
    except Exception as e:  # gdown raises its own FileURLRetrievalError, requests errors...
        raise SourceFailed(gdown_reason(e)) from None
    if not out:
        raise SourceFailed(empty)
    return out


def gdrive_transport(src: dict, tmp: Path, *, progress: bool = True) -> None:
    """The ``gdrive`` source (a Drive file id) into ``tmp``; Drive's confirmation form is gdown's business."""
    no_file = "gdown got no file (Drive quota exceeded, or the file is not shared publicly)"
    _gdown("download", no_file, id=src["id"], output=str(tmp), quiet=not progress)
    if not Path(tmp).exists():
        raise SourceFailed(no_file)


def gdrive_folder_transport(src: dict, tmp: Path, *, progress: bool = True) -> None:
    """A shared Drive folder into the folder ``tmp``; with a ``member`` glob (or a list of them), only that
    file into the file ``tmp``: found in gdown's listing of the folder, fetched by its id."""
    if not src.get("member"):
        _gdown("download_folder", "gdown got no files from the folder (Drive quota exceeded, or not shared "
               "publicly)", id=src["id"], output=str(tmp), quiet=not progress)
        return
    files = _gdown("download_folder", FOLDER_REFUSED, id=src["id"], skip_download=True, quiet=not progress)
    name = match_member([f.path for f in files], member_patterns(src), src.get("choose"), "file")
    file_id = {f.path: f.id for f in files}[name]
    log(f"  {name} is Drive file {file_id} of folder {src['id']}")
    gdrive_transport({"type": "gdrive", "id": file_id}, tmp, progress=progress)
