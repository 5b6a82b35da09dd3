"""Parameters and multiply-accumulates (MACs; FLOPs ~= 2 x MACs) of the whole detector, counted exactly per Conv2d,
BatchNorm2d (1 per element) and Linear call and checked against thop; :func:`macs` is the project's one count.
:func:`mac_anatomy`: where a detector's MACs come from (a conv does ``k*k*(c_in/groups)*c_out*H*W``)."""

from __future__ import annotations

import copy
from typing import Dict, Optional, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from hrank_ssd.nets.models import build_model
from hrank_ssd.nets.registry import get_net, net_names
from hrank_ssd.nets.ssd import ChannelPlan

MAC_NOTE = ("MACs = multiply-accumulates (one multiply + one add); FLOPs ~= 2 x MACs. Counted: Conv2d "
            "(out_h*out_w*out_c*in_c/groups*kh*kw), Linear (in_features per output), BatchNorm2d (1 per "
            "element); not counted: bias adds, ReLU, max pooling, reshapes, concatenation.")
COUNTED = (nn.Conv2d, nn.BatchNorm2d, nn.Linear)


def conv_macs(in_c: int, out_c: int, k, out_h: int, out_w: int, groups: int = 1) -> int:
    """MACs of one Conv2d: ``out_h * out_w * out_c * (in_c / groups) * kh * kw`` (``k`` an int or (kh, kw))."""
    kh, kw = (k, k) if isinstance(k, int) else tuple(k)
    return int(out_h) * int(out_w) * int(out_c) * (int(in_c) // int(groups)) * int(kh) * int(kw)


def build_for_counting(net: str, num_classes: int, compress_rate: Optional[Sequence[float]] = None,
                       image_size: Optional[int] = None, plan=None) -> nn.Module:
    """A model for counting only: built on the meta device (no weights allocated) when torch allows."""
    kwargs = dict(compress_rate=compress_rate, image_size=image_size, plan=plan)
    try:
        with torch.device("meta"):
            return build_model(net, num_classes, **kwargs)
    except (AttributeError, TypeError, NotImplementedError, RuntimeError):  # torch < 2.0, or an op without meta
        return build_model(net, num_classes, **kwargs)


def _on_copy(model: nn.Module, run):
    """``run(copy)`` on an eval-mode copy of ``model``, on the meta device unless an op lacks it."""
    try:
        return run(copy.deepcopy(model).eval().to("meta"))
    except (NotImplementedError, RuntimeError):
        return run(copy.deepcopy(model).eval())


def run_hooked(model: nn.Module, size: int, install):
    """``install(copy)`` (returns ``(state, hook handles)``), one forward of the copy (hooks die with it), ``state``."""
    def run(work):
        state = install(work)[0]
        with torch.no_grad():
            work(dummy_input(work, size))
        return state

    return _on_copy(model, run)


def dummy_input(model: nn.Module, size: int) -> torch.Tensor:
    """One zero image on the model's device and dtype, with its first conv's input channels."""
    p = next(model.parameters())
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    return torch.zeros(1, first.in_channels, size, size, device=p.device, dtype=p.dtype)


PARTS = {"base_net": "backbone", "source_layer_add_ons": "bn_add_on", "extras": "extras",
         "classification_headers": "cls_head", "regression_headers": "reg_head"}


def _label(model: nn.Module, name: str) -> str:
    """A human name for a module: the net's (conv1_1, block3.dw...), else the SSD part's (cls_head0, extra1.3x3)."""
    net = getattr(getattr(model, "cfg", None), "name", None)
    own = get_net(net).module_label(name) if net in net_names() else None
    parts = name.split(".")
    if own or len(parts) != (3 if parts[0] == "extras" else 2):
        return own or name
    if parts[0] in ("classification_headers", "regression_headers"):
        return f"{'cls' if parts[0][0] == 'c' else 'reg'}_head{parts[1]}"
    if parts[0] == "extras":
        return f"extra{parts[1]}.{'1x1' if parts[2] == '0' else '3x3'}"
    return f"add_on{parts[1]}" if parts[0] == "source_layer_add_ons" else name


def count_exact(model: nn.Module, image_size: Optional[int] = None) -> pd.DataFrame:
    """One row per Conv2d / BatchNorm2d / Linear call of one forward, in order: shapes, ``params``, ``MACs``."""
    size = int(image_size or getattr(model, "image_size", None) or 300)

    def install(work):
        names, rows = {m: n for n, m in work.named_modules()}, []

        def hook(m, inputs, out):
            name, head = names[m], names[m].split(".", 1)[0]
            row = {"name": name, "label": _label(work, name), "part": PARTS.get(head, head or "model"),
                   "type": type(m).__name__, "params": sum(p.numel() for p in m.parameters(recurse=False)),
                   "kernel": "-", "stride": 1, "dilation": 1, "groups": 1, "out_h": 1, "out_w": 1}
            if isinstance(m, nn.Conv2d):
                (kh, kw), (oh, ow) = m.kernel_size, out.shape[-2:]
                row.update(in_channels=m.in_channels, out_channels=m.out_channels, kernel=f"{kh}x{kw}",
                           stride=m.stride[0], dilation=m.dilation[0], groups=m.groups, out_h=oh, out_w=ow,
                           MACs=conv_macs(m.in_channels, m.out_channels, (kh, kw), oh, ow, m.groups))
            elif isinstance(m, nn.BatchNorm2d):
                row.update(in_channels=m.num_features, out_channels=m.num_features, out_h=out.shape[-2],
                           out_w=out.shape[-1], MACs=int(out.numel()))
            else:  # Linear
                row.update(in_channels=m.in_features, out_channels=m.out_features,
                           MACs=int(m.in_features * out.numel()))
            rows.append(row)

        return rows, [m.register_forward_hook(hook) for m in work.modules() if isinstance(m, COUNTED)]

    cols = ["name", "label", "part", "type", "in_channels", "out_channels", "kernel", "stride", "dilation",
            "groups", "out_h", "out_w", "params", "MACs"]
    df = pd.DataFrame(run_hooked(model, size, install), columns=cols)
    df.attrs["image_size"] = size
    return df


def macs(model: nn.Module, widths: Optional[Sequence[int]] = None, image_size: Optional[int] = None) -> int:
    """Exact MACs of one image through ``model``; with ``widths``, as if prunable layer i kept ``widths[i]`` filters."""
    if widths is not None:
        n = model.plan.num_prunable
        plan = ChannelPlan([int(k) for k in widths] + list(model.plan.base[n:]), list(model.plan.extras), n)
        model = build_for_counting(model.cfg.name, model.num_classes, image_size=model.image_size, plan=plan)
    return int(count_exact(model, image_size)["MACs"].sum())


def totals(df: pd.DataFrame) -> Dict[str, int]:
    """Sums of a :func:`count_exact` table: params, MACs, and MACs per layer type and per part."""
    out = {"params": int(df["params"].sum()), "MACs": int(df["MACs"].sum())}
    out.update({f"{t}_MACs": int(v) for t, v in df.groupby("type")["MACs"].sum().items()})
    out.update({f"{p}_MACs": int(v) for p, v in df.groupby("part", sort=False)["MACs"].sum().items()})
    return out


def _flatten(tree: dict, prefix: str = "") -> Dict[str, float]:
    """thop's per-layer tree -> {module name: ops} of its leaves."""
    out = {}
    for name, (ops, _params, sub) in tree.items():
        out.update(_flatten(sub, f"{prefix}{name}.") if sub else {f"{prefix}{name}": float(ops)})
    return out


def compare_with_thop(model: nn.Module, image_size: Optional[int] = None) -> pd.DataFrame:
    """:func:`count_exact` with thop's per-layer ``thop_ops`` beside it; ``attrs``: ``thop_total``, ``thop_params``.
    thop profiles a copy: its counters never reach ``model``."""
    import thop

    df = count_exact(model, image_size)
    size = df.attrs["image_size"]
    macs, params, tree = _on_copy(model, lambda work: thop.profile(work, inputs=(dummy_input(work, size),),
                                                                   verbose=False, ret_layer_info=True))
    per_layer = _flatten(tree)
    df["thop_ops"] = [int(round(per_layer[n])) if n in per_layer else pd.NA for n in df["name"]]
    df["elements"] = df["out_channels"] * df["out_h"] * df["out_w"]
    df.attrs.update(thop_total=int(round(float(macs))), thop_params=int(round(float(params))))
    return df


def thop_agreement(df: pd.DataFrame) -> Dict[str, object]:
    """How the analytic count and thop compare in a :func:`compare_with_thop` table."""
    lin, bn = df[df["type"] != "BatchNorm2d"], df[df["type"] == "BatchNorm2d"]
    bn_elems, bn_thop = int(bn["elements"].sum()), int(bn["thop_ops"].sum()) if len(bn) else 0
    return {"analytic_MACs": int(df["MACs"].sum()), "analytic_conv_linear_MACs": int(lin["MACs"].sum()),
            "thop_conv_linear_ops": int(lin["thop_ops"].sum()),
            "conv_linear_equal": bool((lin["MACs"] == lin["thop_ops"]).all()), "bn_elements": bn_elems,
            "thop_bn_ops": bn_thop,
            "thop_bn_ops_per_element": (bn_thop / bn_elems) if bn_elems else None,
            "thop_total": df.attrs["thop_total"], "thop_other_ops": df.attrs["thop_total"] - int(df["thop_ops"].sum()),
            "thop_params": df.attrs["thop_params"], "analytic_params": int(df["params"].sum())}


def mac_anatomy(rows: pd.DataFrame) -> pd.DataFrame:
    """The convs of a :func:`count_exact` table: the factors of their MACs, weights, shares of MACs and params."""
    total_macs, total_params = rows["MACs"].sum(), rows["params"].sum()
    conv = rows[rows["type"] == "Conv2d"].copy()
    kernel = conv["kernel"].str.split("x", expand=True).astype(int)
    conv["kernel_inputs"] = kernel[0] * kernel[1] * (conv["in_channels"] // conv["groups"])
    conv["positions"] = conv["out_h"] * conv["out_w"]
    conv["weights"] = conv["kernel_inputs"] * conv["out_channels"]
    conv["MACs_per_weight"] = conv["MACs"] // conv["weights"]
    conv["MAC_share"] = conv["MACs"] / total_macs
    conv["param_share"] = conv["params"] / total_params
    conv["cumulative_MAC_share"] = conv["MAC_share"].cumsum()
    cols = ["name", "label", "part", "kernel", "kernel_inputs", "out_channels", "out_h", "out_w", "positions",
            "weights", "MACs", "MACs_per_weight", "MAC_share", "param_share", "cumulative_MAC_share"]
    return conv[cols].reset_index(drop=True)


def plot_mac_anatomy(table: pd.DataFrame, title: str = "Where the MACs and the parameters are"):
    """Per conv, in execution order: its MAC and parameter shares (bars) and its output H x W (log, right axis)."""
    import matplotlib.pyplot as plt

    x = np.arange(len(table))
    fig, ax = plt.subplots(figsize=(13, 3.8))
    ax.bar(x - 0.2, table["MAC_share"], 0.4, label="share of the MACs")
    ax.bar(x + 0.2, table["param_share"], 0.4, label="share of the parameters")
    ax.set_xticks(x, table["label"], rotation=75, fontsize=7)
    ax.set_ylabel("share of the model")
    twin = ax.twinx()
    twin.plot(x, table["positions"], "k.-", lw=0.8, label="H x W (right axis)")
    twin.set_yscale("log")
    twin.set_ylabel("output positions H x W")
    handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], fontsize=8, loc="upper right")
    ax.set_title(title)
    fig.tight_layout()
    return fig
