"""The original HRank-SSD project's ``Params`` / ``Flops`` figures, reproduced digit for digit, and why they differ.

The numbers the original HRank-SSD project
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

:func:`flops_table` puts both counts side by side for the course's comparison table.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from hrank_ssd.measure.flops import (
    COUNTED,
    MAC_NOTE,
    build_for_counting,
    count_exact,
    dummy_input,
    profile_thop,
    run_hooked,
    totals,
)
from hrank_ssd.nets import vgg16_ssd
from hrank_ssd.nets.compress import PRUNED_RATE, format_compress_rate, layer_rates, parse_compress_rate
from hrank_ssd.nets.registry import get_net, num_prunable

# The original project's printed figures, quoted for comparison only (README of the HRank-SSD project,
# "FLOPs & Paras"). Everything this module prints is computed; these are only compared against.
PUBLISHED = {
    ("vgg16-ssd", "[0]*14"): {"params": 19434304.0, "flops": 31784832000.0},
    ("vgg16-ssd", "[0.1]*7+[0.5]*9"): {"params": 3591598.0, "flops": 14224900401.0},
    ("mb1-ssd", "[0]*14"): {"params": 4231976.0, "flops": 755703808.0},
}
SEED_MB1_IMAGE_SIZE = 256  # the input size at which the published MobileNetV1 figure comes out exactly
SEED_MB1_CLASSES = 1000  # ImageNet classifier head


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
            model(dummy_input(model, image_size))
    finally:
        for h in handles:
            h.remove()
    cp_rate = {model.base_net[idx]: rates[i] for i, idx in enumerate(vgg16_ssd.CONV_INDEXES[:14])}
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
        return parts, [m.register_forward_hook(hook) for m in work.modules() if isinstance(m, COUNTED)]

    run_hooked(model, image_size, install)
    return float(sum(parts.values())), parts


def _seed_mb1(rates: List[float], image_size: int) -> SeedResult:
    clf = mb1_classifier(rates)
    ops, parts = old_thop_ops(clf, image_size)
    params = float(sum(p.numel() for p in clf.parameters()))
    res = SeedResult("mb1-ssd", rates, image_size, params, ops)
    res.notes.append(f"conv {parts['conv']:.0f} + BatchNorm {parts['bn']:.0f} + Linear {parts['linear']:.0f}")
    return res


def seed_count(net: str, compress_rate: Optional[Sequence[float]] = None, image_size: Optional[int] = None) -> SeedResult:
    """The original project's ``Params`` / ``Flops`` (and per-layer lines for VGG16-SSD), rule for rule."""
    get_net(net)
    rates = layer_rates(compress_rate, num_prunable(net))
    if net == "vgg16-ssd":
        return _seed_vgg(rates, int(image_size or 300))
    return _seed_mb1(rates, int(image_size or SEED_MB1_IMAGE_SIZE))


def published_for(net: str, rates: Sequence[float]) -> Optional[Dict[str, float]]:
    """The original's published figures for this net and rate list, if it published any."""
    key = format_compress_rate([float(r) for r in rates])
    for (n, spec), fig in PUBLISHED.items():
        if n == net and format_compress_rate(layer_rates(parse_compress_rate(spec), num_prunable(n))) == key:
            return fig
    return None


def _pct(a: float, b: float) -> str:
    return f"{100.0 * a / b:.1f}%" if b else "n/a"


def _vgg_reasons(res: SeedResult, df: pd.DataFrame, tot: Dict[str, int], num_classes: int) -> List[str]:
    """Why the VGG16-SSD seed figures differ from the exact count, one reason per item."""
    rates = res.rates
    items: List[str] = []
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
    fc6 = next(ln for ln in conv_lines if ln.name == f"base_net.{vgg16_ssd.CONV_INDEXES[13]}")
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
    return items


def _mb1_reasons(res: SeedResult, df: pd.DataFrame, tot: Dict[str, int], num_classes: int) -> List[str]:
    """Why the MobileNetV1 seed figure differs from the exact MobileNetV1-SSD count."""
    rates = res.rates
    items: List[str] = []
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
    return items


def seed_explanation(res: SeedResult, num_classes: int = 21) -> List[str]:
    """Numbered reasons, with computed numbers, why the seed figures differ from the exact count."""
    rates = res.rates
    df = count_exact(build_for_counting(res.net, num_classes, compress_rate=rates))
    tot = totals(df)
    items: List[str] = []
    reasons = _vgg_reasons if res.net == "vgg16-ssd" else _mb1_reasons
    items += reasons(res, df, tot, num_classes)
    pub = published_for(res.net, rates) if res.image_size == (300 if res.net == "vgg16-ssd"
                                                               else SEED_MB1_IMAGE_SIZE) else None
    if pub is not None:
        ok = pub["params"] == res.params and pub["flops"] == res.flops
        items.append(
            f"The original project published Params {pub['params']:.2f} / Flops {pub['flops']:.2f} for this "
            f"configuration: {'reproduced to the digit' if ok else 'NOT reproduced'} "
            f"(here {res.params:.2f} / {res.flops:.2f}).")
    return [f"{i}. {s}" for i, s in enumerate(items, 1)]


def print_seed_table(net: str = "vgg16-ssd", compress_rate: Optional[Sequence[float]] = None, num_classes: int = 21,
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

DEFAULT_ROWS: Tuple[Tuple[str, str, Optional[List[float]]], ...] = (
    ("VGG16-SSD", "vgg16-ssd", None),
    ("VGG16-SSD pruned", "vgg16-ssd", PRUNED_RATE),
    ("MobileNetV1-SSD", "mb1-ssd", None),
)


def flops_table(rows: Optional[Iterable[Tuple[str, str, Optional[Sequence[float]]]]] = None, num_classes: int = 21,
                image_size: Optional[int] = None, with_thop: bool = False) -> pd.DataFrame:
    """One row per (label, net, compress_rate): exact params / MACs, the seed figures, ratios vs the first row.

    The default rows are VGG16-SSD, pruned VGG16-SSD (``[0.1]*7+[0.5]*9``) and MobileNetV1-SSD.
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
