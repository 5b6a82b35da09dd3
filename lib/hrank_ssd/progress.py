"""tqdm's progress bars; in a headless course run every hidden bar writes its state to the status file the run
names (``HRANK_SSD_STATUS_FILE``) and the run prints it with the time left (:class:`Watch`)."""

from __future__ import annotations

import io
import json
import math
import os
import re
import threading
import time
from pathlib import Path
from typing import Callable, Optional

from tqdm.asyncio import tqdm as _text_tqdm
from tqdm.auto import tqdm as _tqdm

STATUS_ENV = "HRANK_SSD_STATUS_FILE"
clock = time.monotonic  # the status file's clock (tests use their own)


class _StatusBar(_text_tqdm):
    """A bar that writes its state to the status file (at most once a second) instead of a screen. Like tqdm.auto's
    bar it takes an iterator of its iterable when made: a DataLoader draws the same random seeds."""

    def __init__(self, *args, **kwargs):
        self.status, self.written = Path(os.environ[STATUS_ENV]), -math.inf
        super().__init__(*args, **kwargs)

    def display(self, msg=None, pos=None):
        now = clock()
        if now - self.written >= 1.0:  # set_postfix refreshes every step
            self.written = now
            state = {k: self.format_dict.get(k) for k in ("n", "total", "elapsed", "rate", "unit")}
            tmp = self.status.with_name(self.status.name + ".tmp")
            tmp.write_text(json.dumps({"desc": self.desc, **state}))
            os.replace(tmp, self.status)
        return True

    def close(self):
        super().close()
        self.status.unlink(missing_ok=True)  # a finished bar is no longer the current step


def tqdm(*args, disable: bool = False, **kwargs):
    """tqdm's bar; a hidden bar reports to the status file when a headless run asked for one."""
    if disable and os.environ.get(STATUS_ENV):
        kwargs.pop("dynamic_ncols", None)
        return _StatusBar(*args, file=io.StringIO(), mininterval=1.0, **kwargs)
    return _tqdm(*args, disable=disable, **kwargs)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def status_line(state: dict) -> str:
    """One bar's state as ``what: n/total unit, about T left`` (a training bar's later epochs included)."""
    desc, n, total, rate = state.get("desc") or "working", state.get("n") or 0, state.get("total"), state.get("rate")
    line = f"{desc}: {n}{f'/{total}' if total else ''} {state.get('unit') or 'it'}"
    if total and rate:
        epoch = re.search(r"\bepoch (\d+)/(\d+)\b", desc)
        epochs_left = int(epoch.group(2)) - int(epoch.group(1)) if epoch else 0
        line += f", about {_duration((total - n + epochs_left * total) / rate)} left"
    return line


class Watch:
    """While a step runs, print ``[course] label: <status line>`` at most every ``every`` seconds when that line
    changed. ``poll`` does one round (the tests call it with their own clock); ``with`` runs it on a thread."""

    def __init__(self, label: str, log: Callable[[str], None] = print, every: float = 30.0,
                 clock: Callable[[], float] = time.monotonic, path: Optional[Path] = None):
        self.label, self.log, self.every, self.clock = label, log, every, clock
        self.path = path or os.environ.get(STATUS_ENV)  # no status file: nothing to watch
        self.start = self.last = clock()
        self.seen, self._stop = None, threading.Event()

    def poll(self) -> None:
        if self.path is None:
            return
        try:
            line = status_line(json.loads(Path(self.path).read_text()))  # its elapsed time moves on every write
        except OSError:
            return
        now = self.clock()
        if line != self.seen and now - self.last >= self.every:
            self.seen, self.last = line, now
            self.log(f"[course] {self.label} ({_duration(now - self.start)} in): {line}")

    def _run(self) -> None:
        while not self._stop.wait(2.0):
            self.poll()

    def __enter__(self):
        self._thread = None  # no status file: nothing to watch, no thread
        if self.path is not None:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
