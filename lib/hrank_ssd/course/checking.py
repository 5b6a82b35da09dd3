"""How a check runs a student's function: any error or wrong answer is one ``not yet:`` line with a hint."""

from __future__ import annotations

import ast
import contextlib
import copy
import functools
import json
import math
import sys
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence, Tuple

import numpy as np
import torch

from hrank_ssd.course.results import repo_root
from hrank_ssd.errors import HRankError

CORRECT, NOT_YET, HINT = "correct:", "not yet:", "hint:"
LIBRARY = "that is the library's answer; write your own"
SOLUTIONS = "solutions"  # the solved copies' subfolder of the notebooks folder (written by make_notebooks.py)
STUCK = "stuck? exercises.solution({name!r}) prints one answer"
BLANK = "is still blank"


@dataclass
class Case:
    """One input of a check: its arguments, how they read, the library's answer and, if given, how that reads."""

    args: tuple
    label: str
    want: Any = None
    shown: Optional[str] = None


def short(value, limit: int = 120) -> str:
    """A value as it reads in a message (tensors, arrays and NumPy numbers as plain values, long texts cut)."""
    try:
        text = repr(_plain(value))
    except Exception:  # a student's object whose repr fails
        return f"<a {type(value).__name__}>"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _plain(value):
    if isinstance(value, (torch.Tensor, np.ndarray, np.generic)):
        if math.prod(value.shape) > 32:
            return f"{'tensor' if isinstance(value, torch.Tensor) else 'array'} of shape {list(value.shape)}"
        value = value.tolist()
    if isinstance(value, float) and math.isfinite(value):
        return float(f"{value:.7g}")
    if isinstance(value, (list, tuple)) and len(value) <= 32:
        return [_plain(v) for v in value]
    return value


def say(ok: bool, message: str, hint: Optional[str] = None, stuck: Optional[str] = None) -> bool:
    """Print the verdict line, then (when given) the hint and how to ask for the solution; return ``ok``."""
    lines = (f"{CORRECT if ok else NOT_YET} {message}", hint and f"  {HINT} {hint}", stuck and f"  {stuck}")
    print("\n".join(line for line in lines if line))
    return ok


def attempt(fn: Callable, *args):
    """``(fn(*args), None)``, or ``(None, why)`` when the student's code did not run: ``BLANK`` or what it raised."""
    try:
        return fn(*args), None
    except NotImplementedError:
        return None, BLANK
    except Exception as e:  # the student's code: any error becomes a message, never a traceback
        return None, f"raised {type(e).__name__}: {str(e).strip()[:200]}"


def array_of(value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().double().numpy()
    return np.asarray(value, dtype=np.float64)


def number(value) -> float:
    """One number out of an int, a float, a 0-d or one-element tensor or array; ValueError otherwise."""
    return float(array_of(value).item())


def integer(value) -> Optional[int]:
    """An integral number as an int (57, 57.0, tensor(57)); None when ``value`` is not one."""
    try:
        x = number(value)
    except (TypeError, ValueError):
        return None
    return int(x) if not isinstance(value, bool) and math.isfinite(x) and x == int(x) else None


def close(got, want) -> bool:
    a, b = array_of(got), array_of(want)
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=1e-5, atol=1e-7))


def _agrees(same: Callable[[Any, Any], bool], got, want) -> bool:
    try:
        return bool(same(got, want))
    except Exception:  # a comparison that fails disagrees
        return False


def first_mistake(got, mistakes: Sequence[Tuple[Any, str]], same: Callable[[Any, Any], bool]) -> Optional[str]:
    """The hint of the first ``(what a mistake gives, hint)`` of ``mistakes`` that ``got`` matches by ``same``."""
    return next((hint for wrong, hint in mistakes if _agrees(same, got, wrong)), None)


def _hint(hint: Callable[[Case, Any], Optional[str]], case: Case, got) -> Optional[str]:
    """The hint that names what is wrong with ``got``: its form first, then the check's; None when none fits."""
    try:
        if got is None:
            return "the function returned None: end it with `return ...`"
        if isinstance(case.want, (int, float)) and array_of(got).size != 1:
            return f"return one number, not {array_of(got).size} values"
        return hint(case, got)
    except Exception:  # a hint that cannot read the answer fits none
        return None


def run_check(name: str, fn, cases: Sequence[Case], same: Callable[[Any, Any], bool], what: str,
              hint: Callable[[Case, Any], Optional[str]], default_hint: str, library: Sequence[Callable] = (),
              question: bool = False) -> bool:
    """Call ``fn`` on every case; print ``correct:`` or the first problem and a hint. ``fn`` may not be, nor call,
    one of ``library``; a ``question`` never shows its answer."""
    stuck = None if question else STUCK.format(name=name)
    if not callable(fn):
        return say(False, f"{name} is not a function (got {short(fn)}): run its cell above, then this one", stuck=stuck)
    origin = _origin(fn)
    if str(getattr(origin, "__module__", "")).startswith("hrank_ssd."):  # any of the library's functions
        return say(False, f"{name} is the library's {getattr(origin, '__qualname__', type(origin).__name__)}: "
                          f"{LIBRARY}", stuck=stuck)
    for case in cases:
        with _watching(library) as called:  # on copies: an in-place edit cannot spoil the answer
            got, error = attempt(fn, *copy.deepcopy(case.args))
        if error == BLANK:
            return say(False, f"{name} {BLANK}: replace the `raise NotImplementedError(...)` line with your code, run "
                              "that cell, then this one", stuck=stuck)
        if error:
            return say(False, f"{name}({case.label}) {error}", default_hint, stuck)
        if called:
            return say(False, f"{name} calls the library's {called[0]}: {LIBRARY}", stuck=stuck)
        if not _agrees(same, got, case.want):
            expected = ": not what this run's plot shows" if question else \
                f", expected {case.shown or short(case.want)}"
            return say(False, f"{name}({case.label}) returned {short(got)}{expected}",
                       _hint(hint, case, got) or default_hint, stuck)
    if question:
        return say(True, f"{name}: {short(got)}\n  why: {what}")
    return say(True, f"{name} agrees with {what} on all {len(cases)} cases")


def ask(name: str, fn, want, same: Callable[[Any, Any], bool], why: str,
        hint: Callable[[Any], Optional[str]], default_hint: str) -> bool:
    """A question read from a plot: a right ``fn()`` prints ``why``; a wrong one what is wrong, never the answer."""
    return run_check(name, fn, [Case((), "", want)], same, why, lambda case, got: hint(got), default_hint,
                     question=True)


def _origin(fn):
    for _ in range(16):
        inner = fn.func if isinstance(fn, functools.partial) else (getattr(fn, "__func__", None)
                                                                   or getattr(fn, "__wrapped__", None))
        if inner is None:
            break
        fn = inner
    return fn


@contextlib.contextmanager
def _watching(library: Sequence[Callable]):
    """The ``library`` functions entered while the block runs (a profile hook: whatever name reached them)."""
    codes = {_origin(f).__code__: _origin(f).__qualname__ for f in library}
    called, previous = [], sys.getprofile()

    def profile(frame, event, arg):
        if event == "call" and frame.f_code in codes:
            called.append(codes[frame.f_code])

    sys.setprofile(profile if codes else previous)
    try:
        yield called
    finally:
        sys.setprofile(previous)


def solution_text(name: str) -> str:
    """One answer to exercise ``name``: its function in the solved notebooks."""
    folder = repo_root() / "notebooks" / SOLUTIONS
    for path in sorted(folder.glob("[0-9][0-9]_*.ipynb")):
        for cell in json.loads(path.read_text(encoding="utf-8")).get("cells", []):
            source = "".join(cell.get("source", ""))
            if "exercise" in cell.get("metadata", {}).get("tags", []) and f"def {name}(" in source:
                node = next(n for n in ast.parse(source).body if getattr(n, "name", None) == name)
                return "\n".join(ln for ln in ast.get_source_segment(source, node).splitlines()
                                 if ln.strip() not in ("# BEGIN SOLUTION", "# END SOLUTION"))
    raise HRankError(f"no exercise {name!r} in the solved notebooks ({folder}): write its name as the not-yet line "
                     "does, or make them with `python notebooks/make_notebooks.py`")
