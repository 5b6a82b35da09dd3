"""What the download code says: progress lines on stderr, reasons squeezed to one line, one source's failure."""

from __future__ import annotations

import sys


class SourceFailed(Exception):
    """One source did not give a usable file; the message is the reason (one line)."""


def log(msg: str) -> None:
    """Print a progress line on stderr at once (stdout stays for what a command returns, such as paths)."""
    print(msg, file=sys.stderr, flush=True)


def one_line(text: object, limit: int = 300) -> str:
    """``text`` on one line (whitespace runs become one space), cut to ``limit`` characters with ``...``."""
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 3] + "..."
