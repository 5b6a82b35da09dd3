"""Notebook 05's exercise ``count_macs(model, image_size)``: its check, hints and :func:`your_counts`."""

from __future__ import annotations

import math
from typing import Dict, List, Optional

import pandas as pd
from torch import nn

from hrank_ssd.course.checking import STUCK, Case, attempt, integer, run_check, say, short
from hrank_ssd.course.exercises import solution as solution  # the not-yet line says exercises.solution(...)
from hrank_ssd.measure import flops
from hrank_ssd.nets.compress import parse_compress_rate

LIBRARY = (flops.count_exact, flops.macs, flops.conv_macs, flops.totals, flops.compare_with_thop, flops.mac_anatomy)
HOW = ("put a forward hook on every Conv2d, Linear and BatchNorm2d of the model, at every depth; run one zero image "
       "(1 x 3 x image_size x image_size, on the model's device: next(model.parameters()).device) through it; add up "
       "each layer's MACs from the shape of its output; remove the hooks; return the sum as an int")
HINTS = {  # what each usual mistake gives (see mistakes), in the order they are recognised
    "flops": "that is twice the count: a MAC is one multiply and one add together, FLOPs count them apart (about "
             "2 x MACs); count MACs, for one image (a batch of 1)",
    "no_groups": "a grouped conv (groups > 1; MobileNet's depthwise convs have groups = in_channels) connects each "
                 "output channel to in_channels / groups input channels only",
    "input_size": "a conv works once per output position: use the height x width of its output (a stride-2 or "
                  "unpadded conv makes it smaller than its input)",
    "top_only": "model.children() gives the top-level modules only, and networks nest their layers (a Sequential in "
                "a Sequential, a ModuleList of blocks): model.modules() visits every module at every depth",
    "bias": "adding the bias is not counted (the table's convention): count the multiply-accumulates of the "
            "weights only",
    "batchnorm": "count BatchNorm2d too: 1 MAC per element of its output (each value is scaled and shifted)",
    "linear": "count nn.Linear too: in_features MACs for each value of its output",
    "params": "that is the number of weights: a conv uses each weight once per output position, so its MACs are "
              "its weights x its output's height x width",
}


def _nets() -> List[tuple]:
    """(label, model, image size): small networks, each showing one rule, then a detector on the meta device."""
    conv, bn, relu = nn.Conv2d, nn.BatchNorm2d, nn.ReLU
    block = nn.Sequential(nn.Sequential(conv(8, 8, 3, padding=1, groups=2), bn(8)), relu())
    return [
        ("two 3x3 convs at 12x12", nn.Sequential(conv(3, 8, 3, padding=1), relu(), conv(8, 16, 3, padding=1)), 12),
        ("a stride-2 conv and an unpadded one at 16x16",
         nn.Sequential(conv(3, 8, 3, stride=2, padding=1), relu(), conv(8, 8, 3), relu(), conv(8, 4, 1, stride=2)), 16),
        ("a MobileNet block at 10x10: depthwise 3x3 (groups=16), BatchNorm, pointwise 1x1",
         nn.Sequential(conv(3, 16, 3, padding=1, bias=False), bn(16), relu(),
                       conv(16, 16, 3, padding=1, groups=16, bias=False), bn(16), relu(), conv(16, 24, 1, bias=False)),
         10),
        ("a conv and a Linear classifier at 16x16",
         nn.Sequential(conv(3, 8, 3, stride=2), relu(), nn.Flatten(), nn.Linear(8 * 7 * 7, 10)), 16),
        ("nested blocks (a Sequential in a Sequential) at 8x8",
         nn.Sequential(conv(3, 8, 3, padding=1), block, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5)), 8),
        ("MobileNetV1-SSD (21 classes, 300x300) on the meta device", flops.build_for_counting("mb1-ssd", 21), 300),
    ]


def _ways(m: nn.Module, x, y, top: bool) -> Dict[str, int]:
    """One call's MACs (``right``) and each mistake's count of it (``x``, ``y``: input and output shapes)."""
    right, ways = math.prod(y), {}  # BatchNorm2d: 1 per element
    if isinstance(m, nn.Conv2d):
        per_position = m.out_channels * (m.in_channels // m.groups) * math.prod(m.kernel_size)
        right = per_position * y[-2] * y[-1]
        ways = {"no_groups": right * m.groups, "input_size": per_position * x[-2] * x[-1]}
    elif isinstance(m, nn.Linear):
        right *= m.in_features
    biased = isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None
    return {"right": right, "flops": 2 * right, "no_groups": right, "input_size": right,
            "top_only": right if top else 0, "bias": right + math.prod(y) * biased,
            "batchnorm": 0 if isinstance(m, nn.BatchNorm2d) else right,
            "linear": 0 if isinstance(m, nn.Linear) else right,
            "params": sum(p.numel() for p in m.parameters(recurse=False)), **ways}


def mistakes(model: nn.Module, size: int) -> Dict[str, int]:
    """The right total (``right``) and the total each usual mistake of :data:`HINTS` gives instead."""
    def install(work):
        rows, top = [], {work, *work.children()}

        def hook(m, inputs, out):
            rows.append(_ways(m, inputs[0].shape, out.shape, m in top))
        return rows, [m.register_forward_hook(hook) for m in work.modules() if isinstance(m, flops.COUNTED)]
    rows = flops.run_hooked(model, size, install)
    return {key: sum(row[key] for row in rows) for key in ("right", *HINTS)}


def _hint(case: Case, got) -> Optional[str]:
    x, ways = integer(got), mistakes(*case.args)
    if x == 0:
        return "0: no layer was counted; register the hooks before the forward pass and add to a total the hook " \
               "can reach (a list or a dict made outside it)"
    return next((HINTS[k] for k in HINTS if x == ways[k] != ways["right"]), None)


def check_count_macs(fn) -> bool:
    """Notebook 05: ``fn(model, image_size)``, the MACs of one image, on small networks and MobileNetV1-SSD."""
    probe = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    if callable(fn) and attempt(fn, probe, 12)[1] is None and any(m._forward_hooks for m in probe.modules()):
        return say(False, "count_macs left its hooks on the model it counted: the model would count again (and run "
                   "slower) on every later forward pass", "keep what register_forward_hook returns and call its "
                   ".remove() once the forward pass is done (try/finally keeps that true when something fails)",
                   STUCK.format(name="count_macs"))
    cases = [Case((model, size), label, flops.macs(model, image_size=size)) for label, model, size in _nets()]
    return run_check("count_macs", fn, cases, lambda got, want: integer(got) == want, "flops.count_exact's total",
                     _hint, HOW, library=LIBRARY)


def your_counts(fn, table: pd.DataFrame, num_classes: int = 21, image_size: int = 300) -> pd.DataFrame:
    """``table`` (``flops_table``) as counted by ``fn`` where it agrees on every row; else the library's, and why."""
    by = "count_macs"
    for row in table.itertuples():
        model = flops.build_for_counting(row.net, num_classes, compress_rate=parse_compress_rate(row.compress_rate),
                                         image_size=image_size)
        got, error = attempt(fn, model, image_size)
        if integer(got) != row.MACs:
            print(f"on {row.model} your count_macs {error or f'gave {short(got)}'} (the library counts {row.MACs}); "
                  "the numbers below are the library's (flops.count_exact) until the check above says correct")
            by = "flops.count_exact"
            break
    return table[["model", "params", "MACs"]].assign(counted_by=by).join(table[["params_ratio", "MACs_ratio"]])
