"""How an exercise check runs a student's function: any error or wrong answer is one ``not yet:`` line with a
conceptual hint and the way to ask for the solution; the library's own answer, passed or called, is not the student's."""

from __future__ import annotations

import ast
import contextlib
import copy
import functools
import json
import math
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch

from hrank_ssd.course.results import repo_root
from hrank_ssd.errors import HRankError

CORRECT, NOT_YET, HINT = "correct:", "not yet:", "hint:"
LIBRARY = "that is the library's answer; write your own"
SOLUTIONS = "solutions"  # the solved copies' subfolder of the notebooks folder (written by make_notebooks.py)
STUCK = "stuck? exercises.solution({name!r}) prints one answer"


@dataclass
class Case:
    """One input of a check: the arguments, how they read in a message, and the library's answer."""

    args: tuple
    label: str
    want: Any = None
    kwargs: dict = field(default_factory=dict)


def passed(text: str) -> bool:
    """Whether a check cell's printed text says it passed: a ``correct:`` line and no ``not yet:`` line."""
    lines = [ln.strip() for ln in str(text).splitlines()]
    return any(ln.startswith(CORRECT) for ln in lines) and not any(ln.startswith(NOT_YET) for ln in lines)


def short(value, limit: int = 120) -> str:
    """A value as it reads in a message (tensors, arrays and NumPy numbers as plain values, long texts cut)."""
    try:
        text = repr(_plain(value))
    except Exception:  # a student's object whose repr fails
        return f"<a {type(value).__name__}>"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _plain(value):
    """Tensors, arrays and NumPy numbers as plain lists and numbers, floats to 7 significant digits."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().tolist() if value.numel() <= 32 else f"tensor of shape {list(value.shape)}"
    elif isinstance(value, (np.ndarray, np.generic)):
        value = value.tolist() if value.size <= 32 else f"array of shape {list(value.shape)}"
    elif isinstance(value, (list, tuple)) and len(value) <= 32:
        value = [v.item() if isinstance(v, np.generic) or (isinstance(v, torch.Tensor) and v.numel() == 1) else v
                 for v in value]
    if isinstance(value, float) and math.isfinite(value):
        return float(f"{value:.7g}")
    if isinstance(value, list):
        return [_plain(v) if isinstance(v, (float, list)) else v for v in value]
    return value


def _say(ok: bool, message: str, hint: Optional[str] = None, stuck: Optional[str] = None) -> bool:
    """Print the verdict (and, when wrong, a hint and how to ask for the solution); return ``ok``."""
    print(f"{CORRECT if ok else NOT_YET} {message}")
    if not ok and hint:
        print(f"  {HINT} {hint}")
    if not ok and stuck:
        print(f"  {stuck}")
    return ok


def array_of(value) -> np.ndarray:
    """A float64 array of a tensor, an array, a list or a number."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().double().numpy()
    return np.asarray(value, dtype=np.float64)


def number(value) -> float:
    """One number out of an int, a float, a 0-d or one-element tensor or array; ValueError otherwise."""
    arr = array_of(value)
    if arr.size != 1:
        raise ValueError(f"expected one number, got {arr.size} values")
    return float(arr.reshape(()))


def integer(value) -> Optional[int]:
    """An integral number as an int (57, 57.0, tensor(57)); None when ``value`` is not one."""
    if isinstance(value, bool):
        return None
    try:
        x = number(value)
    except (TypeError, ValueError):
        return None
    return int(x) if math.isfinite(x) and x == int(x) else None


_RAISED = object()  # what _call returns when the student's code did not run through


def _call(name: str, shown: str, call: Callable[[], Any], blank: str, default_hint: str, stuck: Optional[str] = None):
    """The student's ``call()``; a blank or failing one is printed as one ``not yet`` line and gives ``_RAISED``."""
    try:
        return call()
    except NotImplementedError:
        _say(False, f"{name} is still blank: replace the `raise NotImplementedError(...)` line {blank}, run that "
                    "cell, then this one", stuck=stuck)
    except Exception as e:  # the student's code: any error becomes a message, never a traceback
        _say(False, f"{shown} raised {type(e).__name__}: {str(e).strip()[:200]}", default_hint, stuck)
    return _RAISED


def _judge(got, want, same: Callable[[Any, Any], bool], hint: Callable[[Any], Optional[str]]):
    """``(agrees, hint)``: a comparison that fails disagrees; the hint (None when none fits) when it disagrees."""
    try:
        if bool(same(got, want)):
            return True, None
    except Exception:
        pass
    try:
        return False, _form_hint(got, want) or hint(got)
    except Exception:
        return False, None


def ask(name: str, fn, want, same: Callable[[Any, Any], bool], why: str,
        hint: Callable[[Any], Optional[str]], default_hint: str) -> bool:
    """A question read from a plot: ``fn()`` returns the student's reading, ``want`` is this run's answer. A right
    one prints the explanation (``why``); a wrong one says what is wrong, never the answer. Never raises."""
    if not callable(fn):
        return _say(False, f"{name} is not a function (got {short(fn)}): run the question's cell above, then this one")
    got = _call(name, f"{name}()", fn, "with `return <your answer>`", default_hint)
    if got is _RAISED:
        return False
    ok, why_not = _judge(got, want, same, hint)
    if not ok:
        return _say(False, f"{name}() returned {short(got)}: not what this run's plot shows", why_not or default_hint)
    _say(True, f"{name}: {short(got)}")
    print(f"  why: {why}")
    return True


def run_check(name: str, fn, cases: Sequence[Case], same: Callable[[Any, Any], bool], what: str,
              hint: Callable[[Case, Any], Optional[str]], default_hint: str, library: Sequence[Callable] = ()) -> bool:
    """Call ``fn`` on every case; print ``correct`` or the first problem with a hint. ``library``: the library's own
    answers, which ``fn`` may neither be nor call (whatever name it reaches them by). Never raises."""
    stuck = STUCK.format(name=name)
    if not callable(fn):
        return _say(False, f"{name} is not a function (got {short(fn)}): run the exercise cell above, then this one",
                    stuck=stuck)
    if _is_library(fn, library):
        return _say(False, f"{name} is the library's {_origin(fn).__qualname__}: {LIBRARY}", stuck=stuck)
    for case in cases:
        with _watching(library) as called:  # on copies: an in-place edit cannot spoil the answer
            got = _call(name, f"{name}({case.label})", lambda c=case: fn(*copy.deepcopy(c.args), **c.kwargs),
                        "of the exercise cell with your code", default_hint, stuck)
        if got is _RAISED:
            return False
        if called:
            return _say(False, f"{name} calls the library's {called[0]}: {LIBRARY}", stuck=stuck)
        ok, why = _judge(got, case.want, same, lambda g, case=case: hint(case, g))
        if not ok:
            return _say(False, f"{name}({case.label}) returned {short(got)}, expected {short(case.want)}",
                        why or default_hint, stuck)
    return _say(True, f"{name} agrees with {what} on all {len(cases)} cases")


def _origin(fn):
    """The function behind a partial, a bound method or a decorated function."""
    for _ in range(16):
        inner = fn.func if isinstance(fn, functools.partial) else (getattr(fn, "__func__", None)
                                                                   or getattr(fn, "__wrapped__", None))
        if inner is None:
            break
        fn = inner
    return fn


def _is_library(fn, library: Sequence[Callable]) -> bool:
    """Whether ``fn`` is one of ``library`` or any function of the hrank_ssd package itself."""
    fn = _origin(fn)
    return any(fn is _origin(f) for f in library) or str(getattr(fn, "__module__", "")).startswith("hrank_ssd.")


@contextlib.contextmanager
def _watching(library: Sequence[Callable]):
    """The names of the ``library`` functions entered while the block runs (a profile hook sees every call, whatever
    name the caller reached the function by)."""
    codes = {getattr(_origin(f), "__code__", None): _origin(f).__qualname__ for f in library} if library else {}
    codes.pop(None, None)
    called, previous = [], sys.getprofile()

    def profile(frame, event, arg):
        if event == "call" and frame.f_code in codes:
            called.append(codes[frame.f_code])
        if previous is not None:
            previous(frame, event, arg)

    if codes:
        sys.setprofile(profile)
    try:
        yield called
    finally:
        if codes:
            sys.setprofile(previous)


def solution_text(name: str) -> str:
    """One answer to exercise ``name``: its function in the solved notebooks (notebooks/solutions), unmarked."""
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


def _form_hint(got, want) -> Optional[str]:
    """A hint when the answer has the wrong form: nothing returned, or many values where one number was wanted."""
    if got is None:
        return "the function returned None: end it with `return ...`"
    if isinstance(want, (int, float)) and array_of(got).size != 1:
        return f"return one number, not {array_of(got).size} values"
    return None


def same_int(got, want) -> bool:
    return integer(got) == want


def close(got, want, rtol: float = 1e-5, atol: float = 1e-7) -> bool:
    a, b = array_of(got), array_of(want)
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=rtol, atol=atol))
