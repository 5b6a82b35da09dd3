"""The original HRank-SSD project's published ``Params`` / ``Flops``, reproduced digit for digit (VGG16-SSD by
HRankPlus' ``get_flops``, MobileNetV1 as an ImageNet classifier under thop 0.0.x), and why they differ."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import pandas as pd
import torch
from torch import nn

from hrank_ssd.measure import flops
from hrank_ssd.measure.flops import build_for_counting, count_exact, run_hooked, totals
from hrank_ssd.nets import vgg16_ssd
from hrank_ssd.nets.compress import PRUNED_RATE, format_compress_rate, layer_rates, parse_compress_rate
from hrank_ssd.nets.registry import get_net, num_prunable

# The original project's printed figures (its README, "FLOPs & Paras"), only compared against.
PUBLISHED = {
    ("vgg16-ssd", "[0]*14"): {"params": 19434304.0, "flops": 31784832000.0},
    ("vgg16-ssd", "[0.1]*7+[0.5]*9"): {"params": 3591598.0, "flops": 14224900401.0},
    ("mb1-ssd", "[0]*14"): {"params": 4231976.0, "flops": 755703808.0},
}
MB1_IMAGE_SIZE, MB1_CLASSES = 256, 1000  # where the published MobileNetV1 figure comes out exactly; ImageNet's head


@dataclass
class CountedLine:
    """One conv as the original's ``measure_layer`` saw it; ``rate`` is None for ``Conv2dNo cp rate``."""

    name: str
    rate: Optional[float]
    shape: List[int]
    out_size: int  # the original's out_h (dilation ignored)
    params: float = 0.0  # printed and summed (filters removed again)
    flops: float = 0.0  # printed: MACs of the layer as built
    counted_flops: float = 0.0  # summed into Flops: MACs with the filters removed again

    def text(self) -> str:
        return "Conv2dNo cp rate" if self.rate is None else \
            f"{self.rate} {self.shape} params: {self.params}  flops: {self.flops}"


@dataclass
class PublishedCount:
    net: str
    rates: List[float]
    image_size: int
    params: float
    flops: float
    lines: List[CountedLine] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)

    def text(self) -> str:
        out = [f"compress rate:  {list(self.rates)}"] + [ln.text() for ln in self.lines] if self.lines else []
        return "\n".join(out + [f"Params: {self.params:.2f}", f"Flops: {self.flops:.2f}"])

    def frame(self) -> pd.DataFrame:
        """The per-layer lines (VGG16-SSD), else the totals, as a table."""
        if not self.lines:
            return pd.DataFrame([{"net": self.net, "image_size": self.image_size, "params": self.params,
                                  "flops": self.flops}])
        return pd.DataFrame([{"name": ln.name, "rate": ln.rate, "shape": ln.shape, "their_out_size": ln.out_size,
                              "params": ln.params, "flops_printed": ln.flops, "flops_counted": ln.counted_flops}
                             for ln in self.lines])


def _convs(module: nn.Module) -> List[nn.Conv2d]:
    return [m for m in module.modules() if isinstance(m, nn.Conv2d)]


def pytorch_ssd_order(model: nn.Module) -> List[nn.Conv2d]:
    """The model's convs in the order pytorch-ssd's ``SSD.forward`` runs them (heads right after each source)."""
    order, start, n_src = [], 0, len(model.source_layer_indexes)
    for k, end in enumerate(model.source_layer_indexes):
        order += [c for i in range(start, end) for c in _convs(model.base_net[i])]
        order += [model.classification_headers[k], model.regression_headers[k]]
        start = end
    for j, block in enumerate(model.extras):
        order += _convs(block) + [model.classification_headers[n_src + j], model.regression_headers[n_src + j]]
    return order


def _vgg(rates: List[float], image_size: int) -> PublishedCount:
    model = build_for_counting("vgg16-ssd", 21, compress_rate=rates, image_size=image_size).eval()
    names = {m: n for n, m in model.named_modules()}

    def install(work):  # input (h, w) of each conv, by name
        convs, sizes = {m: n for n, m in work.named_modules() if isinstance(m, nn.Conv2d)}, {}

        def pre(m, x):
            sizes[convs[m]] = tuple(x[0].shape[-2:])
        return sizes, [m.register_forward_pre_hook(pre) for m in convs]

    in_sizes = run_hooked(model, image_size, install)
    cp_rate = {model.base_net[idx]: rates[i] for i, idx in enumerate(vgg16_ssd.CONV_INDEXES[:14])}
    res = PublishedCount("vgg16-ssd", rates, image_size, 0.0, 0.0)
    for m in pytorch_ssd_order(model):
        (h, w), (kh, kw), rate = in_sizes[names[m]], m.kernel_size, cp_rate.get(m)
        out_h = int((h + 2 * m.padding[0] - kh) / m.stride[0] + 1)  # HRankPlus get_flops: no dilation term
        out_w = int((w + 2 * m.padding[1] - kw) / m.stride[1] + 1)
        shape = [m.out_channels, m.in_channels, kh, kw]
        if rate is None:
            res.lines.append(CountedLine(names[m], None, shape, out_h))
            continue
        params = sum((p.size()[0] - int(rate * p.size()[0])) * p.numel() / p.size()[0] for p in m.parameters())
        per_filter = m.in_channels * kh * kw * out_h * out_w / m.groups
        ops = per_filter * (m.out_channels - int(rate * m.out_channels))
        res.lines.append(CountedLine(names[m], rate, shape, out_h, params, per_filter * m.out_channels, ops))
        res.params, res.flops = res.params + params, res.flops + ops
    return res


def mb1_classifier(compress_rate=None) -> nn.Sequential:
    """pytorch-ssd's ``MobileNetV1`` ImageNet classifier: the SSD's base net + 7x7 average pool + Linear."""
    base = build_for_counting("mb1-ssd", 21, compress_rate=compress_rate).base_net
    with torch.device(next(base.parameters()).device):
        fc = nn.Linear(_convs(base)[-1].out_channels, MB1_CLASSES)
        return nn.Sequential(base, nn.AvgPool2d(7), nn.Flatten(), fc)


def old_thop_ops(model: nn.Module, image_size: int) -> Tuple[float, Dict[str, float]]:
    """Operations under thop 0.0.x rules (conv +1 per output if biased, 2 per BatchNorm element)."""
    parts = {"conv": 0.0, "bn": 0.0, "linear": 0.0}

    def hook(m, inputs, y):
        if isinstance(m, nn.Conv2d):
            k = m.kernel_size[0] * m.kernel_size[1]
            parts["conv"] += y.numel() * (m.in_channels // m.groups * k + (1 if m.bias is not None else 0))
        elif isinstance(m, nn.BatchNorm2d):
            parts["bn"] += 2 * inputs[0].numel()
        else:
            parts["linear"] += m.in_features * y.numel()

    run_hooked(model, image_size, lambda work: (parts, [m.register_forward_hook(hook) for m in work.modules()
                                                        if isinstance(m, flops.COUNTED)]))
    return float(sum(parts.values())), parts


def published_count(net: str, compress_rate: Optional[Sequence[float]] = None,
                    image_size: Optional[int] = None) -> PublishedCount:
    """The original project's ``Params`` / ``Flops`` (and per-layer lines for VGG16-SSD), rule for rule."""
    get_net(net)
    rates = layer_rates(compress_rate, num_prunable(net))
    if net == "vgg16-ssd":
        return _vgg(rates, int(image_size or 300))
    clf, size = mb1_classifier(rates), int(image_size or MB1_IMAGE_SIZE)
    ops, parts = old_thop_ops(clf, size)
    return PublishedCount(net, rates, size, float(sum(p.numel() for p in clf.parameters())), ops,
                          notes=[f"conv {parts['conv']:.0f} + BatchNorm {parts['bn']:.0f} + Linear {parts['linear']:.0f}"])


def published_for(net: str, rates: Sequence[float]) -> Optional[Dict[str, float]]:
    """The original's published figures for this net and rate list, if it published any."""
    key = format_compress_rate([float(r) for r in rates])
    return next((fig for (n, spec), fig in PUBLISHED.items() if n == net and format_compress_rate(
        layer_rates(parse_compress_rate(spec), num_prunable(n))) == key), None)


def _vgg_facts(res: PublishedCount, df: pd.DataFrame):
    """The convs it counts, their true MACs and params, and fc6 (its line and its exact row)."""
    convs = [ln for ln in res.lines if ln.rate is not None]
    own = df[df["name"].isin({ln.name for ln in convs})]
    fc6 = next(ln for ln in convs if ln.name == f"base_net.{vgg16_ssd.CONV_INDEXES[13]}")
    return convs, int(own["MACs"].sum()), int(own["params"].sum()), fc6, df[df["name"] == fc6.name].iloc[0]


def _vgg_reasons(res: PublishedCount, df: pd.DataFrame, tot: Dict[str, int], num_classes: int) -> List[str]:
    convs, own_macs, own_params, fc6, fc6_row = _vgg_facts(res, df)
    rest = tot["MACs"] - own_macs
    printed = sum(ln.flops for ln in convs)
    twice = (f"The layers are already pruned to int(c*(1-rate)) filters, yet int(rate*f) of their f filters are "
             f"removed again: Params {res.params:.0f} vs {own_params} true params of these {len(convs)} convs "
             f"({own_params - res.params:+.0f}); the summed Flops {res.flops:.0f} vs {printed:.0f} from the printed "
             f"per-layer flops ({printed - res.flops:+.0f}), so the printed lines do not add up to the printed total."
             if any(r > 0 for r in res.rates) else "All rates are 0, so the double removal of pruned filters changes "
             "nothing here; with rates > 0 the published params and Flops are too small (filters removed twice).")
    return [f"Only the {len(convs)} convs with a compress rate are counted ({len(res.lines) - len(convs)} other convs "
            f"print 'Conv2dNo cp rate'; BatchNorm ignored). The rest of the detector (fc7, conv4_3 BatchNorm, extras, "
            f"{num_classes}-class heads) holds {tot['params'] - own_params} params and {rest} MACs "
            f"({100.0 * rest / tot['MACs']:.1f}% of the exact {tot['MACs']} MACs).",
            f"fc6 (3x3, padding 6, dilation 6) is sized {fc6.out_size}x{fc6.out_size} because the original's "
            f"output-size formula ignores dilation; it really is {fc6_row['out_h']}x{fc6_row['out_w']}. Printed fc6 "
            f"flops {fc6.flops:.0f} vs exact {fc6_row['MACs']} MACs (+{fc6.flops - fc6_row['MACs']:.0f}).", twice,
            f"Their 'Flops' are MACs (one multiply-add each): {res.flops:.0f} MACs ~= {2 * res.flops:.0f} FLOPs.",
            f"Net effect: exact whole-detector {tot['params']} params / {tot['MACs']} MACs vs published "
            f"{res.params:.0f} / {res.flops:.0f} (params x{tot['params'] / res.params:.3f}, "
            f"MACs x{tot['MACs'] / res.flops:.3f})."]


def _mb1_reasons(res: PublishedCount, df: pd.DataFrame, tot: Dict[str, int], num_classes: int) -> List[str]:
    clf = mb1_classifier(res.rates)
    at_224, at_300 = old_thop_ops(clf, 224)[0], old_thop_ops(clf, 300)[0]
    return [f"The figure is the ImageNet MobileNetV1 classifier ({MB1_CLASSES}-class Linear head on the same base "
            f"net), not MobileNetV1-SSD: no extras and no SSD heads. Its {res.params:.0f} params vs the SSD's "
            f"{tot['params']} ({num_classes} classes).",
            f"It is counted at {res.image_size}x{res.image_size}; the original's figure comes out at "
            f"{MB1_IMAGE_SIZE}x{MB1_IMAGE_SIZE}, neither the SSD's 300x300 nor ImageNet's 224x224 (the same rules "
            f"give {at_224:.0f} at 224 and {at_300:.0f} at 300).",
            f"thop-0.0.x rules: {res.notes[0] if res.notes else ''}; BatchNorm is 2 ops per element, ReLU and the "
            f"functional average pool 0, the Linear bias not counted.",
            f"Net effect: exact MobileNetV1-SSD at {df.attrs['image_size']}: {tot['params']} params / {tot['MACs']} "
            f"MACs (BatchNorm as 1 MAC/element) vs published {res.params:.0f} / {res.flops:.0f} "
            f"(MACs x{tot['MACs'] / res.flops:.3f})."]


def published_explanation(res: PublishedCount, num_classes: int = 21) -> List[str]:
    """Numbered reasons, with computed numbers, why the published figures differ from the exact count."""
    df = count_exact(build_for_counting(res.net, num_classes, compress_rate=res.rates))
    reasons = (_vgg_reasons if res.net == "vgg16-ssd" else _mb1_reasons)(res, df, totals(df), num_classes)
    native = res.image_size == (300 if res.net == "vgg16-ssd" else MB1_IMAGE_SIZE)
    pub = published_for(res.net, res.rates) if native else None
    if pub is not None:
        ok = pub["params"] == res.params and pub["flops"] == res.flops
        reasons.append(f"The original project published Params {pub['params']:.2f} / Flops {pub['flops']:.2f} for "
                       f"this configuration: {'reproduced to the digit' if ok else 'NOT reproduced'} (here "
                       f"{res.params:.2f} / {res.flops:.2f}).")
    return [f"{i}. {s}" for i, s in enumerate(reasons, 1)]


def print_published_table(net: str = "vgg16-ssd", compress_rate: Optional[Sequence[float]] = None,
                          num_classes: int = 21, image_size: Optional[int] = None, explain: bool = True,
                          file=None) -> PublishedCount:
    """Print the original's table (same format, same digits) and, after it, why it differs from the exact count."""
    file = file or sys.stdout
    res = published_count(net, compress_rate, image_size)
    print(res.text(), file=file)
    if explain:
        print("\nWhy these differ from the exact count (python -m hrank_ssd flops --style exact):", file=file)
        print("\n".join(published_explanation(res, num_classes)), file=file)
    return res


DEFAULT_ROWS: Tuple[Tuple[str, str, Optional[List[float]]], ...] = (
    ("VGG16-SSD", "vgg16-ssd", None), ("VGG16-SSD pruned", "vgg16-ssd", PRUNED_RATE),
    ("MobileNetV1-SSD", "mb1-ssd", None))


def flops_table(rows: Optional[Iterable[Tuple[str, str, Optional[Sequence[float]]]]] = None,
                num_classes: int = 21, image_size: Optional[int] = None) -> pd.DataFrame:
    """One row per (label, net, compress_rate): exact params / MACs, published figures, ratios to the first row."""
    out = []
    for label, net, rate in rows or DEFAULT_ROWS:
        t = totals(count_exact(build_for_counting(net, num_classes, compress_rate=rate, image_size=image_size)))
        pub = published_count(net, rate)
        out.append({"model": label, "net": net, "compress_rate": format_compress_rate(pub.rates),
                    "params": t["params"], "MACs": t["MACs"], "GMACs": t["MACs"] / 1e9,
                    "published_params": pub.params, "published_flops": pub.flops})
    df = pd.DataFrame(out)
    df["params_ratio"] = df["params"] / df["params"].iloc[0]
    df["MACs_ratio"] = df["MACs"] / df["MACs"].iloc[0]
    df.attrs["note"] = flops.MAC_NOTE
    return df


def _why(res: PublishedCount, num_classes: int) -> str:
    """In one line, why the published figures differ from the exact count (:func:`published_explanation` at length)."""
    if res.net != "vgg16-ssd":
        return (f"the ImageNet classifier ({MB1_CLASSES} classes, no SSD extras or heads) at {res.image_size}x"
                f"{res.image_size}, thop 0.0.x rules (BatchNorm: 2 ops per element)")
    df = count_exact(build_for_counting(res.net, num_classes, compress_rate=res.rates))
    convs, own_macs, _, fc6, fc6_row = _vgg_facts(res, df)
    return (f"only the {len(convs)} convs with a compress rate ({1 - own_macs / df['MACs'].sum():.0%} of the MACs "
            f"left out: fc7, BatchNorm, extras, heads); fc6 as {fc6.out_size}x{fc6.out_size}, not {fc6_row['out_h']}x"
            f"{fc6_row['out_w']} (dilation ignored)" + ("; pruned filters removed twice" if any(res.rates) else ""))


def comparison(table: pd.DataFrame, num_classes: int = 21) -> pd.DataFrame:
    """Per row of :func:`flops_table` (its ``MACs``: anyone's exact count): params and MACs beside the original's
    published figures, whether its counting rules reproduce them to the digit, the ratio, and why they differ."""
    out = []
    for row in table.itertuples():
        res = published_count(row.net, parse_compress_rate(row.compress_rate))
        pub = published_for(res.net, res.rates) or {}
        out.append({"model": row.model, "params": row.params, "MACs": row.MACs,
                    **{f"published_{k}": int(pub[k]) if pub else None for k in ("params", "flops")},
                    "reproduced": pub == {"params": res.params, "flops": res.flops} if pub else None,
                    "MACs_per_published": row.MACs / res.flops, "why": _why(res, num_classes)})
    return pd.DataFrame(out)
