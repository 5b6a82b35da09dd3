"""Compress rates in HRank's syntax, parsed without ``eval``.

``"[0.1]*7+[0.5]*9"`` means: 7 layers at rate 0.1, then 9 at 0.5. Entry i is the fraction of
filters removed from prunable layer i. Entries past the net's prunable count are ignored (the
original project passes 16 for VGG16-SSD's 14 layers, and ``[0.]*100`` for "no pruning").
"""

from __future__ import annotations

import re
from typing import List, Sequence, Union

from hrank_ssd.errors import HRankError

_TERM = re.compile(r"^\[([^\[\]]*)\](?:\*(\d+))?$")

RateSpec = Union[str, Sequence[float], None]
PRUNED_RATE = "[0.1]*7+[0.5]*9"  # the original project's pruned VGG16-SSD


def _fail(text: str, why: str) -> HRankError:
    return HRankError(f"bad --compress_rate {text!r}: {why}. Write it like \"[0.1]*7+[0.5]*9\" "
                      f"(terms [rates...]*count joined by +, each rate in [0, 1))")


def parse_compress_rate(spec: RateSpec, num_layers: int) -> List[float]:
    """Per-layer rates for ``num_layers`` prunable layers from a string or a list."""
    if spec is None:
        return [0.0] * num_layers
    text = spec if isinstance(spec, str) else repr(list(spec))
    if isinstance(spec, str):
        rates: List[float] = []
        compact = re.sub(r"\s+", "", spec)
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
    else:
        try:
            rates = [float(r) for r in spec]
        except (TypeError, ValueError):
            raise _fail(text, "it is not a list of numbers") from None
    if len(rates) < num_layers:
        raise _fail(text, f"it gives {len(rates)} rates but this net has {num_layers} prunable layers")
    for i, r in enumerate(rates[:num_layers]):
        if not 0.0 <= r < 1.0:
            raise _fail(text, f"rate {r} for layer {i + 1} is outside [0, 1)")
    return rates[:num_layers]


def format_compress_rate(rates: Sequence[float]) -> str:
    """Shortest ``[a]*n+[b]*m`` form of a rate list (the inverse of :func:`parse_compress_rate`)."""
    parts, i = [], 0
    while i < len(rates):
        j = i
        while j < len(rates) and rates[j] == rates[i]:
            j += 1
        parts.append(f"[{rates[i]:g}]*{j - i}" if j - i > 1 else f"[{rates[i]:g}]")
        i = j
    return "+".join(parts)
