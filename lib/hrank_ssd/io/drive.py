"""Google Drive files and folders through gdown, with its failures (quota, not shared, no network) in one line."""

from __future__ import annotations

from pathlib import Path

from hrank_ssd.io.messages import SourceFailed, one_line
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
    if "Cannot retrieve the public link" in text or "permission" in text.lower():
        return "Google Drive refused the file (not shared publicly, or quota exceeded)"
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
    """The ``gdrive_folder`` source (a shared Drive folder id) into the folder ``tmp``."""
    import gdown  # as above: only when a Drive source is tried

    try:
        out = gdown.download_folder(id=src["id"], output=str(tmp), quiet=not progress)
    except Exception as e:
        raise SourceFailed(gdown_reason(e)) from None
    if not out:
        raise SourceFailed("gdown got no files from the folder (Drive quota exceeded, or not shared publicly)")
