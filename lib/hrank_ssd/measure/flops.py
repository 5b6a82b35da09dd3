"""Parameters and multiply-accumulates (MACs) of the detectors, counted two ways, plus the original table.

Two counts live here:

* **exact** (:func:`count_exact`): every Conv2d, BatchNorm2d and Linear the forward pass runs on one
  image, found with forward hooks, so the whole detector is counted (backbone, BatchNorm add-on,
  extras, classification and regression heads). It is checked against ``thop.profile``
  (:func:`profile_thop`, :func:`compare_with_thop`). The counted operations are

  - Conv2d: ``out_h * out_w * out_c * (in_c / groups) * kh * kw`` MACs (bias additions not counted);
  - Linear: ``in_features`` MACs per output element (bias additions not counted);
  - BatchNorm2d: 1 MAC per output element (inference BN is ``y = x * scale + shift``, foldable into
    the conv before it). thop counts 4 operations per element for an affine BatchNorm instead;
  - ReLU, max pooling, reshapes, concatenation: 0 (comparisons and copies, no multiply-add).

  One MAC is one multiply and one add, so FLOPs ~= 2 x MACs.

* **seed** (:func:`seed_count`, :func:`print_seed_table`): the numbers the original HRank-SSD project
  printed (HRankPlus' ``get_flops.measure_model`` on a pruned pytorch-ssd model, and a thop count of the
  ImageNet MobileNetV1 classifier), reproduced rule by rule so that the differences can be shown.
  Rules for VGG16-SSD, as found by reproducing every published digit:

  1. only the 14 convs that carry a compress rate (conv1_1..conv5_3, fc6) are counted; fc7, the BatchNorm
     add-on, the extras and the heads print ``Conv2dNo cp rate`` and count nothing;
  2. the output size is ``int((in + 2 * pad - k) / stride + 1)``, dilation ignored: fc6 (3x3, pad 6,
     dilation 6) is sized 29x29 instead of its real 19x19;
  3. the layers are already pruned, yet ``int(rate * f)`` of their ``f`` filters are removed again, in
     the parameters (weight and bias) and in the MACs that go into the total;
  4. the per-layer ``flops`` printed is the MAC count of the (once-)pruned layer, so the printed lines do
     not add up to the printed total when any rate is non-zero; the ``flops`` are MACs.

  For MobileNetV1 the published figures are those of the ImageNet classifier (1000-class Linear head,
  no SSD extras or heads) at 256x256, counted with thop-0.0.x rules: conv MACs, 2 operations per
  BatchNorm element, ``in_features`` per Linear output, 0 for ReLU and the functional average pool.
"""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from hrank_ssd.nets.compress import PRUNED_RATE, format_compress_rate, parse_compress_rate
from hrank_ssd.nets.config import get_config
from hrank_ssd.nets.models import NUM_PRUNABLE, THOP_KEYS, VGG_CONV_INDEXES, VGG_LAYER_NAMES, build_model

MAC_NOTE = ("MACs = multiply-accumulates (one multiply + one add); FLOPs ~= 2 x MACs. Counted: Conv2d "
            "(out_h*out_w*out_c*in_c/groups*kh*kw), Linear (in_features per output), BatchNorm2d (1 per "
            "element); not counted: bias adds, ReLU, max pooling, reshapes, concatenation.")

# The original project's printed figures, quoted for comparison only (README of the HRank-SSD project,
# "FLOPs & Paras"). Everything this module prints is computed; these are only compared against.
PUBLISHED = {
    ("vgg16-ssd", "[0]*14"): {"params": 19434304.0, "flops": 31784832000.0},
    ("vgg16-ssd", "[0.1]*7+[0.5]*9"): {"params": 3591598.0, "flops": 14224900401.0},
    ("mb1-ssd", "[0]*14"): {"params": 4231976.0, "flops": 755703808.0},
}
SEED_MB1_IMAGE_SIZE = 256  # the input size at which the published MobileNetV1 figure comes out exactly
SEED_MB1_CLASSES = 1000  # ImageNet classifier head

_COUNTED = (nn.Conv2d, nn.BatchNorm2d, nn.Linear)


def conv_macs(in_c: int, out_c: int, k, out_h: int, out_w: int, groups: int = 1) -> int:
    """MACs of one Conv2d: ``out_h * out_w * out_c * (in_c / groups) * kh * kw`` (``k`` an int or (kh, kw))."""
    kh, kw = (k, k) if isinstance(k, int) else tuple(k)
    return int(out_h) * int(out_w) * int(out_c) * (int(in_c) // int(groups)) * int(kh) * int(kw)


def strip_thop_buffers(model: nn.Module) -> nn.Module:
    """Remove thop's ``total_ops`` / ``total_params`` buffers or attributes from every module, in place."""
    for m in model.modules():
        for key in THOP_KEYS:
            m._buffers.pop(key, None)
            m._non_persistent_buffers_set.discard(key)
            m.__dict__.pop(key, None)
    return model


def _image_size(model: nn.Module, image_size: Optional[int]) -> int:
    return int(image_size or getattr(model, "image_size", None) or 300)


def build_for_counting(net: str, num_classes: int, compress_rate=None, image_size: Optional[int] = None,
                       plan=None) -> nn.Module:
    """A model for counting only: built on the meta device (no weights allocated) when torch allows."""
    kwargs = dict(compress_rate=compress_rate, image_size=image_size, plan=plan)
    try:
        with torch.device("meta"):
            return build_model(net, num_classes, **kwargs)
    except (AttributeError, TypeError, NotImplementedError, RuntimeError):  # torch < 2.0, or an op without meta
        return build_model(net, num_classes, **kwargs)


def _on_copy(model: nn.Module, run):
    """``run(copy)`` on a deep copy of ``model`` in eval mode; the caller's model is untouched.

    The copy goes to the meta device (shapes only, no arithmetic: counting VGG16-SSD takes milliseconds);
    a model whose forward has no meta kernels is run for real instead.
    """
    for meta in (True, False):
        work = copy.deepcopy(model).eval()
        if meta:
            try:
                work = work.to("meta")
            except (NotImplementedError, RuntimeError):
                continue
        try:
            return run(work)
        except (NotImplementedError, RuntimeError):
            if not meta:
                raise
    raise RuntimeError("unreachable")


def _run_hooked(model: nn.Module, size: int, install):
    """``install(copy)`` (returns ``(state, hook handles)``), one forward of the copy, then ``state``."""
    def run(work):
        state, handles = install(work)
        try:
            with torch.no_grad():
                work(_dummy(work, size))
            return state
        finally:
            for h in handles:
                h.remove()

    return _on_copy(model, run)


def _dummy(model: nn.Module, size: int) -> torch.Tensor:
    """One zero image; its channels are those of the model's first conv (3 for the detectors)."""
    p = next(model.parameters(), None)
    first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    return torch.zeros(1, first.in_channels if first is not None else 3, size, size, device=p.device if p is not None else "cpu",
                       dtype=p.dtype if p is not None and p.is_floating_point() else torch.float32)


def _part(name: str) -> str:
    head = name.split(".", 1)[0]
    return {"base_net": "backbone", "source_layer_add_ons": "bn_add_on", "extras": "extras",
            "classification_headers": "cls_head", "regression_headers": "reg_head"}.get(head, head or "model")


def _label(model: nn.Module, name: str) -> str:
    """A human name for a module: conv1_1..fc7 for VGG, blockK.dw/.pw for MobileNetV1."""
    net = getattr(getattr(model, "cfg", None), "name", None)
    parts = name.split(".")
    if parts[0] == "base_net" and len(parts) >= 2:
        idx = int(parts[1])
        if net == "vgg16-ssd" and idx in VGG_CONV_INDEXES and len(parts) == 2:
            return VGG_LAYER_NAMES[VGG_CONV_INDEXES.index(idx)]
        if net == "mb1-ssd" and len(parts) == 3:
            kind = {"0": "conv", "1": "bn", "3": "pw", "4": "pw_bn"}.get(parts[2], parts[2])
            if idx > 0 and parts[2] in ("0", "1"):
                kind = {"0": "dw", "1": "dw_bn"}[parts[2]]
            return f"block{idx}.{kind}"
    if parts[0] in ("classification_headers", "regression_headers") and len(parts) == 2:
        return f"{'cls' if parts[0][0] == 'c' else 'reg'}_head{parts[1]}"
    if parts[0] == "extras" and len(parts) == 3:
        return f"extra{parts[1]}.{'1x1' if parts[2] == '0' else '3x3'}"
    if parts[0] == "source_layer_add_ons":
        return "conv4_3_bn"
    return name


def count_exact(model: nn.Module, image_size: Optional[int] = None) -> pd.DataFrame:
    """Per-layer parameters and MACs of one forward pass on a ``image_size``-square image (batch 1).

    One row per Conv2d / BatchNorm2d / Linear call, in execution order, with columns ``name``, ``label``,
    ``part``, ``type``, ``in_channels``, ``out_channels``, ``kernel``, ``stride``, ``dilation``, ``groups``,
    ``out_h``, ``out_w``, ``params`` (the module's own parameters) and ``MACs`` (rules in the module doc).
    The model is not touched: a deep copy runs in eval mode under ``torch.no_grad``.
    """
    size = _image_size(model, image_size)

    def install(work):
        names = {m: n for n, m in work.named_modules()}
        rows: List[dict] = []
        hook = _exact_hook(work, names, rows)
        return rows, [m.register_forward_hook(hook) for m in work.modules() if isinstance(m, _COUNTED)]

    rows = _run_hooked(model, size, install)
    cols = ["name", "label", "part", "type", "in_channels", "out_channels", "kernel", "stride", "dilation",
            "groups", "out_h", "out_w", "params", "MACs"]
    df = pd.DataFrame(rows, columns=cols)
    df.attrs["image_size"] = size
    return df


def _exact_hook(work: nn.Module, names: Dict[nn.Module, str], rows: List[dict]):
    def hook(m, inputs, out):
        name = names[m]
        row = {"name": name, "label": _label(work, name), "part": _part(name), "type": type(m).__name__,
               "params": sum(p.numel() for p in m.parameters(recurse=False))}
        if isinstance(m, nn.Conv2d):
            kh, kw = m.kernel_size
            oh, ow = out.shape[-2:]
            row.update(in_channels=m.in_channels, out_channels=m.out_channels, kernel=f"{kh}x{kw}",
                       stride=m.stride[0], dilation=m.dilation[0], groups=m.groups, out_h=oh, out_w=ow,
                       MACs=conv_macs(m.in_channels, m.out_channels, (kh, kw), oh, ow, m.groups))
        elif isinstance(m, nn.BatchNorm2d):
            row.update(in_channels=m.num_features, out_channels=m.num_features, kernel="-", stride=1,
                       dilation=1, groups=1, out_h=out.shape[-2], out_w=out.shape[-1], MACs=int(out.numel()))
        else:  # Linear
            row.update(in_channels=m.in_features, out_channels=m.out_features, kernel="-", stride=1,
                       dilation=1, groups=1, out_h=1, out_w=1, MACs=int(m.in_features * out.numel()))
        rows.append(row)

    return hook


def totals(df: pd.DataFrame) -> Dict[str, int]:
    """Sums of a :func:`count_exact` table: params, MACs, and MACs per layer type and per part."""
    out = {"params": int(df["params"].sum()), "MACs": int(df["MACs"].sum())}
    for t, v in df.groupby("type")["MACs"].sum().items():
        out[f"{t}_MACs"] = int(v)
    for p, v in df.groupby("part", sort=False)["MACs"].sum().items():
        out[f"{p}_MACs"] = int(v)
    return out


def _thop_run(model: nn.Module, image_size: Optional[int]):
    import thop

    size = _image_size(model, image_size)

    def run(work):
        try:
            macs, params, tree = thop.profile(work, inputs=(_dummy(work, size),), verbose=False, ret_layer_info=True)
            return float(macs), float(params), tree
        finally:
            strip_thop_buffers(work)

    try:
        return _on_copy(model, run)
    finally:
        strip_thop_buffers(model)  # never leave counters on the caller's model, whatever thop version runs


def profile_thop(model: nn.Module, image_size: Optional[int] = None) -> Tuple[int, int]:
    """``(macs, params)`` from ``thop.profile`` on a deep copy; the model keeps no thop buffers."""
    macs, params, _ = _thop_run(model, image_size)
    return int(round(macs)), int(round(params))


def _flatten(tree: dict, prefix: str = "") -> Dict[str, float]:
    out = {}
    for name, (ops, _params, sub) in tree.items():
        full = f"{prefix}{name}"
        if sub:
            out.update(_flatten(sub, full + "."))
        else:
            out[full] = float(ops)
    return out


def compare_with_thop(model: nn.Module, image_size: Optional[int] = None) -> pd.DataFrame:
    """:func:`count_exact` with thop's per-layer count beside it (``thop_ops``) and their difference.

    Conv2d and Linear rows agree exactly; BatchNorm2d rows differ by a fixed factor per element
    (thop counts normalise + affine, 4 per element for an affine BN; we count 1 MAC). ``attrs`` holds
    ``thop_total`` (thop's total, functional ops included) and ``thop_params``.
    """
    df = count_exact(model, image_size)
    macs, params, tree = _thop_run(model, image_size)
    per_layer = _flatten(tree)
    df["thop_ops"] = [int(round(per_layer[n])) if n in per_layer else pd.NA for n in df["name"]]
    df["elements"] = df["out_channels"] * df["out_h"] * df["out_w"]
    df.attrs.update(thop_total=int(round(macs)), thop_params=int(round(params)))
    return df


def thop_agreement(model: nn.Module, image_size: Optional[int] = None,
                   table: Optional[pd.DataFrame] = None) -> Dict[str, object]:
    """How the analytic count and thop compare: conv/linear exact, BN as a per-element factor.

    ``table`` is a :func:`compare_with_thop` result to reuse instead of counting again.
    """
    df = table if table is not None else compare_with_thop(model, image_size)
    lin = df[df["type"] != "BatchNorm2d"]
    bn = df[df["type"] == "BatchNorm2d"]
    bn_elems = int(bn["elements"].sum())
    bn_thop = int(bn["thop_ops"].sum()) if len(bn) else 0
    return {
        "analytic_MACs": int(df["MACs"].sum()),
        "analytic_conv_linear_MACs": int(lin["MACs"].sum()),
        "thop_conv_linear_ops": int(lin["thop_ops"].sum()),
        "conv_linear_equal": bool((lin["MACs"] == lin["thop_ops"]).all()),
        "bn_elements": bn_elems,
        "analytic_bn_MACs": int(bn["MACs"].sum()) if len(bn) else 0,
        "thop_bn_ops": bn_thop,
        "thop_bn_ops_per_element": (bn_thop / bn_elems) if bn_elems else None,
        "thop_total": df.attrs["thop_total"],
        "thop_other_ops": df.attrs["thop_total"] - int(df["thop_ops"].sum()),
        "thop_params": df.attrs["thop_params"],
        "analytic_params": int(df["params"].sum()),
    }


# ------------------------------------------------------------------ seed (the original's table)

@dataclass
class SeedLine:
    """One conv as the original's ``measure_layer`` saw it; ``rate`` is None for ``Conv2dNo cp rate``."""

    name: str
    rate: Optional[float]
    shape: List[int]
    in_size: int
    out_size: int  # the original's out_h (dilation ignored)
    params: float = 0.0  # what it printed and summed (filters removed again)
    flops: float = 0.0  # what it printed: MACs of the layer as built
    counted_flops: float = 0.0  # what it summed into Flops: MACs with filters removed again

    def text(self) -> str:
        if self.rate is None:
            return "Conv2dNo cp rate"
        return f"{self.rate} {self.shape} params: {self.params}  flops: {self.flops}"


@dataclass
class SeedResult:
    net: str
    rates: List[float]
    image_size: int
    params: float
    flops: float
    lines: List[SeedLine] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)

    def text(self) -> str:
        out = []
        if self.net == "vgg16-ssd":
            out.append(f"compress rate:  {list(self.rates)}")
            out += [ln.text() for ln in self.lines]
        out += [f"Params: {self.params:.2f}", f"Flops: {self.flops:.2f}"]
        return "\n".join(out)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame([{"name": ln.name, "rate": ln.rate, "shape": ln.shape, "in_size": ln.in_size,
                              "seed_out_size": ln.out_size, "params": ln.params, "flops_printed": ln.flops,
                              "flops_counted": ln.counted_flops} for ln in self.lines])


def _convs(module: nn.Module) -> List[nn.Conv2d]:
    return [m for m in module.modules() if isinstance(m, nn.Conv2d)]


def pytorch_ssd_order(model: nn.Module) -> List[nn.Conv2d]:
    """The model's convs in the order pytorch-ssd's ``SSD.forward`` runs them (heads right after each source)."""
    order: List[nn.Conv2d] = []
    start = 0
    n_src = len(model.source_layer_indexes)
    for k, end in enumerate(model.source_layer_indexes):
        for i in range(start, end):
            order += _convs(model.base_net[i])
        order += [model.classification_headers[k], model.regression_headers[k]]
        start = end
    for j, block in enumerate(model.extras):
        order += _convs(block)
        order += [model.classification_headers[n_src + j], model.regression_headers[n_src + j]]
    return order


def _seed_vgg(rates: List[float], image_size: int) -> SeedResult:
    model = build_for_counting("vgg16-ssd", 21, compress_rate=rates, image_size=image_size).eval()
    names = {m: n for n, m in model.named_modules()}
    in_sizes: Dict[nn.Module, Tuple[int, int]] = {}
    handles = [m.register_forward_pre_hook(lambda m, x: in_sizes.__setitem__(m, tuple(x[0].shape[-2:])))
               for m in _convs(model)]
    try:
        with torch.no_grad():
            model(_dummy(model, image_size))
    finally:
        for h in handles:
            h.remove()
    cp_rate = {model.base_net[idx]: rates[i] for i, idx in enumerate(VGG_CONV_INDEXES[:14])}
    lines: List[SeedLine] = []
    count_params = 0.0
    count_ops = 0.0
    for m in pytorch_ssd_order(model):
        h, w = in_sizes[m]
        # HRankPlus get_flops: int((x + 2p - k) / s + 1), no dilation term
        out_h = int((h + 2 * m.padding[0] - m.kernel_size[0]) / m.stride[0] + 1)
        out_w = int((w + 2 * m.padding[1] - m.kernel_size[1]) / m.stride[1] + 1)
        shape = [m.out_channels, m.in_channels, m.kernel_size[0], m.kernel_size[1]]
        rate = cp_rate.get(m)
        if rate is None:
            lines.append(SeedLine(names[m], None, shape, h, out_h))
            continue
        pruned_num = int(rate * m.out_channels)
        params = 0.0
        for p in m.parameters():
            f = p.size()[0]
            params += (f - int(rate * f)) * p.numel() / f
        ops = m.in_channels * (m.out_channels - pruned_num) * m.kernel_size[0] * m.kernel_size[1] \
            * out_h * out_w / m.groups
        ops_ori = m.in_channels * m.out_channels * m.kernel_size[0] * m.kernel_size[1] * out_h * out_w / m.groups
        lines.append(SeedLine(names[m], rate, shape, h, out_h, params, ops_ori, ops))
        count_params += params
        count_ops += ops
    return SeedResult("vgg16-ssd", rates, image_size, count_params, count_ops, lines)


class MobileNetV1Classifier(nn.Module):
    """pytorch-ssd's ``MobileNetV1`` ImageNet classifier: the SSD's base net + avg_pool2d(7) + Linear."""

    def __init__(self, base_net: nn.Sequential, num_classes: int = SEED_MB1_CLASSES):
        super().__init__()
        self.model = base_net
        last = [m for m in base_net.modules() if isinstance(m, nn.Conv2d)][-1].out_channels
        self.fc = nn.Linear(last, num_classes)

    def forward(self, x):
        x = F.avg_pool2d(self.model(x), 7)
        return self.fc(torch.flatten(x, 1))


def mb1_classifier(compress_rate=None, num_classes: int = SEED_MB1_CLASSES) -> MobileNetV1Classifier:
    base = build_for_counting("mb1-ssd", 21, compress_rate=compress_rate).base_net
    with torch.device(next(base.parameters()).device):
        return MobileNetV1Classifier(base, num_classes)


def old_thop_ops(model: nn.Module, image_size: int) -> Tuple[float, Dict[str, float]]:
    """Operations under thop 0.0.x rules: conv MACs (+1 per output if biased), 2 per BatchNorm element
    (eval mode), ``in_features`` per Linear output, 0 for ReLU/pooling/functional ops."""
    parts = {"conv": 0.0, "bn": 0.0, "linear": 0.0}

    def hook(m, inputs, y):
        if isinstance(m, nn.Conv2d):
            k = m.kernel_size[0] * m.kernel_size[1]
            parts["conv"] += y.numel() * (m.in_channels // m.groups * k + (1 if m.bias is not None else 0))
        elif isinstance(m, nn.BatchNorm2d):
            parts["bn"] += 2 * inputs[0].numel()
        elif isinstance(m, nn.Linear):
            parts["linear"] += m.in_features * y.numel()

    def install(work):
        for v in parts:
            parts[v] = 0.0
        return parts, [m.register_forward_hook(hook) for m in work.modules() if isinstance(m, _COUNTED)]

    _run_hooked(model, image_size, install)
    return float(sum(parts.values())), parts


def _seed_mb1(rates: List[float], image_size: int) -> SeedResult:
    clf = mb1_classifier(rates)
    ops, parts = old_thop_ops(clf, image_size)
    params = float(sum(p.numel() for p in clf.parameters()))
    res = SeedResult("mb1-ssd", rates, image_size, params, ops)
    res.notes.append(f"conv {parts['conv']:.0f} + BatchNorm {parts['bn']:.0f} + Linear {parts['linear']:.0f}")
    return res


def seed_count(net: str, compress_rate=None, image_size: Optional[int] = None) -> SeedResult:
    """The original project's ``Params`` / ``Flops`` (and per-layer lines for VGG16-SSD), rule for rule."""
    get_config(net)
    rates = parse_compress_rate(compress_rate, NUM_PRUNABLE[net])
    if net == "vgg16-ssd":
        return _seed_vgg(rates, int(image_size or 300))
    return _seed_mb1(rates, int(image_size or SEED_MB1_IMAGE_SIZE))


def published_for(net: str, rates: Sequence[float]) -> Optional[Dict[str, float]]:
    """The original's published figures for this net and rate list, if it published any."""
    key = format_compress_rate([float(r) for r in rates])
    for (n, spec), fig in PUBLISHED.items():
        if n == net and format_compress_rate(parse_compress_rate(spec, NUM_PRUNABLE[n])) == key:
            return fig
    return None


def _pct(a: float, b: float) -> str:
    return f"{100.0 * a / b:.1f}%" if b else "n/a"


def seed_explanation(res: SeedResult, num_classes: int = 21) -> List[str]:
    """Numbered reasons, with computed numbers, why the seed figures differ from the exact count."""
    rates = res.rates
    df = count_exact(build_for_counting(res.net, num_classes, compress_rate=rates))
    tot = totals(df)
    items: List[str] = []
    if res.net == "vgg16-ssd":
        conv_lines = [ln for ln in res.lines if ln.rate is not None]
        counted_names = {ln.name for ln in conv_lines}
        own = df[df["name"].isin(counted_names)]
        own_macs, own_params = int(own["MACs"].sum()), int(own["params"].sum())
        rest_macs, rest_params = tot["MACs"] - own_macs, tot["params"] - own_params
        n_skipped = sum(1 for ln in res.lines if ln.rate is None)
        items.append(
            f"Only the {len(conv_lines)} convs with a compress rate are counted ({n_skipped} other convs print "
            f"'Conv2dNo cp rate'; BatchNorm ignored). The rest of the detector (fc7, conv4_3 BatchNorm, extras, "
            f"{num_classes}-class heads) holds {rest_params} params and {rest_macs} MACs "
            f"({_pct(rest_macs, tot['MACs'])} of the exact {tot['MACs']} MACs).")
        fc6 = next(ln for ln in conv_lines if ln.name == f"base_net.{VGG_CONV_INDEXES[13]}")
        fc6_row = df[df["name"] == fc6.name].iloc[0]
        items.append(
            f"fc6 (3x3, padding 6, dilation 6) is sized {fc6.out_size}x{fc6.out_size} because the original's "
            f"output-size formula ignores dilation; it really is {fc6_row['out_h']}x{fc6_row['out_w']}. Printed fc6 "
            f"flops {fc6.flops:.0f} vs exact {fc6_row['MACs']} MACs (+{fc6.flops - fc6_row['MACs']:.0f}).")
        printed = sum(ln.flops for ln in conv_lines)
        if any(r > 0 for r in rates):
            items.append(
                f"The layers are already pruned to int(c*(1-rate)) filters, yet int(rate*f) of their f filters "
                f"are removed again: seed Params {res.params:.0f} vs {own_params} true params of these "
                f"{len(conv_lines)} convs ({own_params - res.params:+.0f}); the summed Flops {res.flops:.0f} vs "
                f"{printed:.0f} from the printed per-layer flops ({printed - res.flops:+.0f}), so the printed "
                f"lines do not add up to the printed total.")
        else:
            items.append("All rates are 0, so the double removal of pruned filters changes nothing here; with "
                         "rates > 0 the seed params and Flops are too small (filters removed twice).")
        items.append(
            f"Seed 'Flops' are MACs (one multiply-add each): {res.flops:.0f} MACs ~= {2 * res.flops:.0f} FLOPs.")
        items.append(
            f"Net effect: exact whole-detector {tot['params']} params / {tot['MACs']} MACs vs seed "
            f"{res.params:.0f} / {res.flops:.0f} (params x{tot['params'] / res.params:.3f}, "
            f"MACs x{tot['MACs'] / res.flops:.3f}).")
    else:
        clf = mb1_classifier(rates)
        at_224, at_300 = old_thop_ops(clf, 224)[0], old_thop_ops(clf, 300)[0]
        items.append(
            f"The figure is the ImageNet MobileNetV1 classifier ({SEED_MB1_CLASSES}-class Linear head on the "
            f"same base net), not MobileNetV1-SSD: no extras and no SSD heads. Its {res.params:.0f} params vs "
            f"the SSD's {tot['params']} ({num_classes} classes).")
        items.append(
            f"It is counted at {res.image_size}x{res.image_size}; the original's figure comes out at "
            f"{SEED_MB1_IMAGE_SIZE}x{SEED_MB1_IMAGE_SIZE}, neither the SSD's 300x300 nor ImageNet's 224x224 "
            f"(the same rules give {at_224:.0f} at 224 and {at_300:.0f} at 300).")
        items.append(
            f"thop-0.0.x rules: {res.notes[0] if res.notes else ''}; BatchNorm is 2 ops per element, ReLU and the "
            f"functional average pool 0, the Linear bias not counted.")
        items.append(
            f"Net effect: exact MobileNetV1-SSD at {df.attrs['image_size']}: {tot['params']} params / "
            f"{tot['MACs']} MACs (BatchNorm as 1 MAC/element) vs seed {res.params:.0f} / {res.flops:.0f} "
            f"(MACs x{tot['MACs'] / res.flops:.3f}).")
    pub = published_for(res.net, rates) if res.image_size == (300 if res.net == "vgg16-ssd"
                                                               else SEED_MB1_IMAGE_SIZE) else None
    if pub is not None:
        ok = pub["params"] == res.params and pub["flops"] == res.flops
        items.append(
            f"The original project published Params {pub['params']:.2f} / Flops {pub['flops']:.2f} for this "
            f"configuration: {'reproduced to the digit' if ok else 'NOT reproduced'} "
            f"(here {res.params:.2f} / {res.flops:.2f}).")
    return [f"{i}. {s}" for i, s in enumerate(items, 1)]


def print_seed_table(net: str = "vgg16-ssd", compress_rate=None, num_classes: int = 21,
                     image_size: Optional[int] = None, explain: bool = True, file=None) -> SeedResult:
    """Print the original's table (same format, same digits) and, after it, why it differs from the exact count."""
    file = file or sys.stdout
    res = seed_count(net, compress_rate, image_size)
    print(res.text(), file=file)
    if explain:
        print("\nWhy these differ from the exact count (python -m hrank_ssd flops --style exact):", file=file)
        for line in seed_explanation(res, num_classes):
            print(line, file=file)
    return res


# ------------------------------------------------------------------ comparison table

DEFAULT_ROWS: Tuple[Tuple[str, str, Optional[str]], ...] = (
    ("VGG16-SSD", "vgg16-ssd", None),
    ("VGG16-SSD pruned", "vgg16-ssd", PRUNED_RATE),
    ("MobileNetV1-SSD", "mb1-ssd", None),
)


def flops_table(rows: Optional[Iterable[Tuple[str, str, Optional[str]]]] = None, num_classes: int = 21,
                image_size: Optional[int] = None, with_thop: bool = False) -> pd.DataFrame:
    """One row per (label, net, compress_rate): exact params / MACs, the seed figures, ratios vs the first row.

    The default rows are VGG16-SSD, pruned VGG16-SSD ("[0.1]*7+[0.5]*9") and MobileNetV1-SSD.
    """
    out = []
    for label, net, rate in rows or DEFAULT_ROWS:
        model = build_for_counting(net, num_classes, compress_rate=rate, image_size=image_size)
        t = totals(count_exact(model))
        seed = seed_count(net, rate)
        row = {"model": label, "net": net,
               "compress_rate": format_compress_rate(seed.rates),
               "params": t["params"], "MACs": t["MACs"], "GMACs": t["MACs"] / 1e9,
               "seed_params": seed.params, "seed_flops": seed.flops}
        if with_thop:
            row["thop_ops"] = profile_thop(model)[0]
        out.append(row)
    df = pd.DataFrame(out)
    df["params_ratio"] = df["params"] / df["params"].iloc[0]
    df["MACs_ratio"] = df["MACs"] / df["MACs"].iloc[0]
    df.attrs["note"] = MAC_NOTE
    return df
