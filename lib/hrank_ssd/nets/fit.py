"""Does a downloaded checkpoint fit its manifest entry (``net``, ``compress_rate``)? ``fetch(..., check=fit_problem)``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from hrank_ssd.errors import HRankError
from hrank_ssd.nets.compress import layer_rates, parse_compress_rate
from hrank_ssd.nets.models import default_plan, detect_net, layer_names, plan_from_state_dict, read_state_dict
from hrank_ssd.nets.ssd import plan_with_rates


def expected_widths(net: str, compress_rate: Optional[str]) -> list:
    """Filters of each prunable layer of ``net`` pruned at ``compress_rate`` (text; None: unpruned)."""
    plan = default_plan(net)
    rates = layer_rates(parse_compress_rate(compress_rate), plan.num_prunable) if compress_rate else []
    return plan_with_rates(plan, rates).prunable


def fit_problem(path: Path, art: dict) -> Optional[str]:
    """Why the checkpoint ``path`` is not the manifest's ``art``, in one line; None when it fits or is no net's."""
    if art.get("kind") != "weights" or not art.get("net"):
        return None
    try:
        state = read_state_dict(path)
        net = detect_net(state)
        widths = plan_from_state_dict(state, net).prunable
    except HRankError as e:
        return f"not a usable checkpoint ({e})"
    if net != art["net"]:
        return f"a {net} checkpoint, not {art['net']}"
    rate = art.get("compress_rate")
    want = expected_widths(net, rate)
    if widths == want:
        return None
    i = next(k for k, (a, b) in enumerate(zip(want, widths)) if a != b)
    unpruned = expected_widths(net, None)
    what = "an unpruned" if widths == unpruned else "a differently pruned"
    target = f"compress rate {rate}" if rate else f"the unpruned {net}"
    return (f"{what} {net} checkpoint, not the one the manifest names: layer {i + 1} ({layer_names(net)[i]}) has "
            f"{widths[i]} filters where {target} gives {want[i]}")
