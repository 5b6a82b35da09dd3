"""Compress rates (fractions of filters removed) in HRank's syntax, ``"[0.1]*7+[0.5]*9"``, parsed without ``eval``."""

from __future__ import annotations

import itertools
import re
from typing import List, Optional, Sequence

from hrank_ssd.errors import HRankError

_TERM = re.compile(r"^\[([^\[\]]*)\](?:\*(\d+))?$")

PRUNED_RATE_TEXT = "[0.1]*7+[0.5]*9"  # the original project's pruned VGG16-SSD, as its users write it
PRUNED_RATE: List[float] = [0.1] * 7 + [0.5] * 9


def _fail(text: str, why: str) -> HRankError:
    return HRankError(f"bad --compress_rate {text!r}: {why}. Write it like \"[0.1]*7+[0.5]*9\" "
                      f"(terms [rates...]*count joined by +, each rate in [0, 1))")


def parse_compress_rate(text: str) -> List[float]:
    """Every rate written in ``text``; the library takes the list and checks it with :func:`layer_rates`."""
    rates: List[float] = []
    compact = re.sub(r"\s+", "", text)
    if not compact:
        raise _fail(text, "it is empty")
    for term in compact.split("+"):
        m = _TERM.match(term)
        if not m:
            raise _fail(text, f"cannot read the term {term!r}")
        try:
            values = [float(v) for v in m.group(1).split(",") if v != ""]
        except ValueError:
            raise _fail(text, f"{term!r} holds something that is not a number") from None
        if not values:
            raise _fail(text, f"{term!r} is an empty list")
        rates += values * int(m.group(2) or 1)
    return rates


def layer_rates(rates: Optional[Sequence[float]], num_layers: int) -> List[float]:
    """The first ``num_layers`` rates of a parsed list (``None``: no pruning; extra entries ignored), checked."""
    if rates is None:
        return [0.0] * num_layers
    if isinstance(rates, str):
        raise TypeError("the library takes a list of rates: parse the user's text once with parse_compress_rate")
    try:
        values = [float(r) for r in rates]
    except (TypeError, ValueError):
        raise _fail(repr(rates), "it is not a list of numbers") from None
    text = format_compress_rate(values)
    if len(values) < num_layers:
        raise _fail(text, f"it gives {len(values)} rates but this net has {num_layers} prunable layers")
    for i, r in enumerate(values[:num_layers]):
        if not 0.0 <= r < 1.0:
            raise _fail(text, f"rate {r} for layer {i + 1} is outside [0, 1)")
    return values[:num_layers]


def format_compress_rate(rates: Sequence[float]) -> str:
    """Shortest ``[a]*n+[b]*m`` form of a rate list (the inverse of :func:`parse_compress_rate`)."""
    runs = [(rate, len(list(run))) for rate, run in itertools.groupby(rates)]
    return "+".join(f"[{rate:g}]*{n}" if n > 1 else f"[{rate:g}]" for rate, n in runs)
