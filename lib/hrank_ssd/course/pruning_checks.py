"""Notebook 02's checks of the student's surgery (``prune_pair``) and sensitivity scan: each runs the student's
function on cases built here, never on the library's own (:mod:`hrank_ssd.course.checking`)."""

from __future__ import annotations

from typing import Optional

import pandas as pd
import torch
from torch import nn

from hrank_ssd.course.checking import Case, run_check

BLOCK_IN, BLOCK_MID, BLOCK_OUT = 3, 8, 10  # conv (3 -> 8 filters), its BatchNorm, the next conv (8 -> 10)


def _block(seed: int):
    """A conv, its BatchNorm (trained-looking statistics, eval mode) and the next conv, with an input batch."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    conv, bn, nxt = nn.Conv2d(BLOCK_IN, BLOCK_MID, 3, padding=1), nn.BatchNorm2d(BLOCK_MID), \
        nn.Conv2d(BLOCK_MID, BLOCK_OUT, 3, padding=1)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5, generator=g)
        bn.bias.uniform_(-0.2, 0.2, generator=g)
        bn.running_mean.uniform_(-0.1, 0.1, generator=g)
        bn.running_var.uniform_(0.5, 2.0, generator=g)
    return conv, bn.eval(), nxt, torch.randn(2, BLOCK_IN, 7, 7, generator=g)


def _forward(conv, bn, nxt, x, mask=None) -> torch.Tensor:
    """next(relu(bn(conv(x)))), the removed filters' activations zeroed by ``mask`` (the masked original)."""
    with torch.no_grad():
        h = conv(x)
        h = torch.relu(bn(h) if bn is not None else h)
        return nxt(h if mask is None else h * mask.view(1, -1, 1, 1))


class _Want:
    """A check's answer as it reads in a message (``text``), and the value compared (``value``, ``x``: the input)."""

    def __init__(self, value, text: str, x=None):
        self.value, self.text, self.x = value, text, x

    def __repr__(self) -> str:
        return self.text


def check_prune_pair(fn) -> bool:
    """Notebook 02: ``fn(conv, bn, next_conv, keep) -> (conv, bn, next_conv)``, the layers cut to the filters
    ``keep``; the pruned block must compute what the original computes with the other filters zeroed."""
    cases = []
    for seed, keep, with_bn in ((0, [0, 2, 3, 7], True), (1, [1, 4, 5], False), (2, [6], True)):
        conv, bn, nxt, x = _block(seed)
        bn = bn if with_bn else None
        mask = torch.zeros(BLOCK_MID)
        mask[keep] = 1.0
        cases.append(Case((conv, bn, nxt, torch.tensor(keep)),
                          f"keep={keep}, {'with' if with_bn else 'without'} a BatchNorm",
                          _Want(_forward(conv, bn, nxt, x, mask), "the masked original's output", x)))

    def layers(got):
        if not (isinstance(got, (tuple, list)) and len(got) == 3):
            raise ValueError("return (conv, bn, next_conv)")
        return got

    def same(got, want: _Want) -> bool:
        out = _forward(*layers(got), want.x)
        # the kept filters' sums are the same products, added in another order: float32 rounding, far below 1e-5
        return out.shape == want.value.shape and bool(torch.allclose(out, want.value, rtol=1e-5, atol=1e-5))

    def hint(case, got) -> Optional[str]:
        conv, bn, nxt = layers(got)
        kept, with_bn = len(case.args[3]), case.args[1] is not None
        if conv.weight.shape[0] != kept:
            return f"the conv has {conv.weight.shape[0]} filters: keep only the filters in keep (dim 0 of its weight)"
        if conv.bias is not None and conv.bias.shape[0] != kept:
            return "the conv's bias still has one value per original filter: slice it with keep too"
        if with_bn and (bn is None or any(t.shape[0] != kept for t in (bn.weight, bn.bias, bn.running_mean,
                                                                       bn.running_var))):
            return ("the BatchNorm still normalises every original channel: slice its weight, bias, running_mean "
                    "and running_var with keep")
        if nxt.weight.shape[0] != BLOCK_OUT:
            return "the next conv must keep all its filters: cut its input channels (dim 1), not its outputs (dim 0)"
        if nxt.weight.shape[1] != kept:
            return "the next conv still reads every original channel: keep only its input channels in keep (dim 1)"
        return ("the shapes are right but the block computes something else: copy the original weights (in keep's "
                "order, the same for the conv, the BatchNorm and the next conv's inputs), not new random ones")

    return run_check("prune_pair", fn, cases, same, "the masked original (removed filters zeroed)", hint,
                     "keep the filters a pruned layer keeps: dim 0 of the conv's weight and bias, every BatchNorm "
                     "vector, dim 1 of the next conv's weight")


def _scan_answer(layers, rates) -> _Want:
    rows = [(i, r, _fake_map(i, r)) for i in layers for r in rates]
    return _Want(pd.DataFrame(rows, columns=["layer", "rate", "map"]), f"{len(rows)} rows (layer, rate, map): {rows}")


def _fake_map(layer: int, rate: float) -> float:
    return round(0.9 - 0.04 * layer * rate, 6)


def check_sensitivity_scan(fn) -> bool:
    """Notebook 02: ``fn(layers, rates, prune_one, evaluate)`` -> rows (layer, rate, map), one per layer and rate,
    run here with a stand-in ``prune_one`` and ``evaluate`` whose mAP is a known formula of (layer, rate)."""
    def prune_one(layer, rate):
        return ("pruned", int(layer), float(rate))

    def evaluate(model):
        if not (isinstance(model, tuple) and len(model) == 3 and model[0] == "pruned"):
            raise ValueError("evaluate() takes a model that prune_one(layer, rate) returned")
        return _fake_map(model[1], model[2])

    shapes = (([1, 4, 7], [0.3, 0.6]), ([2], [0.5, 0.9, 0.1]), ([14, 3], [0.7]))
    cases = [Case((layers, rates, prune_one, evaluate), f"layers={layers}, rates={rates}", _scan_answer(layers, rates))
             for layers, rates in shapes]

    def table(got) -> pd.DataFrame:
        rows = pd.DataFrame(list(got.to_dict("records") if isinstance(got, pd.DataFrame) else got))
        return rows[["layer", "rate", "map"]].astype(float).sort_values(["layer", "rate"]).reset_index(drop=True)

    def same(got, want):
        return table(got).equals(want.value.astype(float).sort_values(["layer", "rate"]).reset_index(drop=True))

    def hint(case, got) -> Optional[str]:
        layers, rates = case.args[:2]
        rows = pd.DataFrame(list(got.to_dict("records") if isinstance(got, pd.DataFrame) else got))
        if not {"layer", "rate", "map"} <= set(rows.columns):
            return "give every row the keys layer, rate and map (a list of dicts, or a DataFrame with those columns)"
        if len(rows) < len(layers) * len(rates):
            return ("some (layer, rate) pairs are missing: loop over every layer and, inside that loop, over every "
                    "rate")
        if len(rows) > len(layers) * len(rates):
            return "one row per (layer, rate) pair: the unpruned model's row is added for you"
        return "each row's map must be evaluate() of the model prune_one made for that row's layer and rate"

    return run_check("sensitivity_scan", fn, cases, same, "the stand-in scan's known mAPs", hint,
                     "for each layer, for each rate: prune that one layer at that rate, evaluate it, record a row")
