"""Google Drive files and folders through gdown (5.2.2 and 6), with its failures in one line."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import List, Tuple

from hrank_ssd.io.archives import match_member
from hrank_ssd.io.manifest import member_patterns
from hrank_ssd.io.messages import SourceFailed, log, one_line
from hrank_ssd.io.verify import QUOTA_MARKERS


def gdown_reason(e: BaseException) -> str:
    """What a gdown exception means for the user, in one line."""
    text = str(e)
    if "NameResolution" in text or "Max retries exceeded" in text or type(e).__name__ in (
            "ConnectionError", "ConnectTimeout", "ReadTimeout", "Timeout"):
        return "drive.google.com unreachable (no network connection?)"
    if any(m.decode() in text for m in QUOTA_MARKERS) or "quota" in text.lower():
        return ("Google Drive quota exceeded: too many users have viewed or downloaded this file in the "
                "last 24 h")
    if "folder contents" in text or "folder information" in text:  # gdown 6's and gdown 5's words
        return "Google Drive refused to list the folder (not shared publicly, moved, or too many accesses)"
    if "Cannot retrieve the public link" in text or "permission" in text.lower():
        return "Google Drive refused the file (not shared publicly, or quota exceeded)"
    if isinstance(e, TypeError) and "skip_download" in text:
        return "this gdown cannot list a Drive folder without downloading it: pip install -U gdown"
    return f"gdown failed: {one_line(text, 200)}"


def gdrive_transport(src: dict, tmp: Path, *, progress: bool = True) -> None:
    """The ``gdrive`` source (a Drive file id) into ``tmp``; Drive's confirmation form is gdown's business."""
    import gdown  # requests and BeautifulSoup come with it: loaded only when a Drive source is tried

    try:
        out = gdown.download(id=src["id"], output=str(tmp), quiet=not progress)
    except Exception as e:  # gdown raises its own FileURLRetrievalError, requests errors...
        raise SourceFailed(gdown_reason(e)) from None
    if out is None or not Path(tmp).exists():
        raise SourceFailed("gdown got no file (Drive quota exceeded, or the file is not shared publicly)")


def gdrive_folder_transport(src: dict, tmp: Path, *, progress: bool = True) -> None:
    """A shared Drive folder into the folder ``tmp``; with a ``member`` glob, only that file into the file ``tmp``."""
    if src.get("member"):
        return gdrive_member_transport(src, tmp, progress=progress)
    import gdown  # as above: only when a Drive source is tried

    try:
        out = gdown.download_folder(id=src["id"], output=str(tmp), quiet=not progress)
    except Exception as e:
        raise SourceFailed(gdown_reason(e)) from None
    if not out:
        raise SourceFailed("gdown got no files from the folder (Drive quota exceeded, or not shared publicly)")


def list_drive_folder(folder_id: str, progress: bool = False) -> List[Tuple[str, str]]:
    """``(file id, path in the folder)`` of each file of a shared Drive folder, listed by gdown, nothing downloaded."""
    import gdown  # as above

    kwargs = {"id": folder_id, "skip_download": True, "quiet": not progress}
    if "remaining_ok" in inspect.signature(gdown.download_folder).parameters:
        kwargs["remaining_ok"] = True  # gdown 5 refuses a folder listing of 50 files unless told the 50 will do
    try:
        files = gdown.download_folder(**kwargs)
    except Exception as e:
        raise SourceFailed(gdown_reason(e)) from None
    if not files:
        raise SourceFailed("Google Drive refused to list the folder (not shared publicly, moved, or too many "
                           "accesses)")
    return [(f.id, f.path) for f in files]


def gdrive_member_transport(src: dict, tmp: Path, *, progress: bool = True) -> None:
    """One file of a Drive folder (``src["member"]``: a glob or a list of them) into ``tmp``, fetched by its id."""
    files = list_drive_folder(src["id"], progress)
    name = match_member([path for _, path in files], member_patterns(src), src.get("choose"), "file")
    file_id = dict((path, i) for i, path in files)[name]
    log(f"  {name} is Drive file {file_id} of folder {src['id']}")
    gdrive_transport({"type": "gdrive", "id": file_id}, tmp, progress=progress)
