"""The original HRank-SSD project's published ``Params`` / ``Flops``, reproduced digit for digit (VGG16-SSD by
HRankPlus' ``get_flops``, MobileNetV1 as an ImageNet classifier under thop 0.0.x), and why they differ."""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import pandas as pd
import torch
from torch import nn

from hrank_ssd.measure import flops
from hrank_ssd.measure.flops import build_for_counting, count_exact, run_hooked, totals
from hrank_ssd.nets import vgg16_ssd
from hrank_ssd.nets.compress import PRUNED_RATE, format_compress_rate, layer_rates, parse_compress_rate
from hrank_ssd.nets.registry import num_prunable

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
    their_out_size: int  # the original's out_h (dilation ignored)
    params: float = 0.0  # printed and summed (filters removed again)
    flops_printed: float = 0.0  # MACs of the layer as built
    flops_counted: float = 0.0  # summed into Flops: MACs with the filters removed again

    def text(self) -> str:
        return "Conv2dNo cp rate" if self.rate is None else \
            f"{self.rate} {self.shape} params: {self.params}  flops: {self.flops_printed}"


@dataclass
class PublishedCount:
    net: str
    rates: List[float]
    image_size: int
    params: float
    flops: float
    lines: List[CountedLine] = field(default_factory=list)

    def text(self) -> str:
        out = [f"compress rate:  {list(self.rates)}"] + [ln.text() for ln in self.lines] if self.lines else []
        return "\n".join(out + [f"Params: {self.params:.2f}", f"Flops: {self.flops:.2f}"])

    def frame(self) -> pd.DataFrame:
        """The per-layer lines (VGG16-SSD), else the totals, as a table."""
        return pd.DataFrame([asdict(ln) for ln in self.lines] or [
            {"net": self.net, "image_size": self.image_size, "params": self.params, "flops": self.flops}])


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


def old_thop_ops(model: nn.Module, image_size: int) -> float:
    """Operations under thop 0.0.x rules (conv +1 per output if biased, 2 per BatchNorm element)."""
    ops = [0.0]

    def hook(m, inputs, y):
        if isinstance(m, nn.Conv2d):
            k = m.kernel_size[0] * m.kernel_size[1]
            ops[0] += y.numel() * (m.in_channels // m.groups * k + (1 if m.bias is not None else 0))
        else:  # BatchNorm: 2 per element; Linear: in_features per output
            ops[0] += 2 * inputs[0].numel() if isinstance(m, nn.BatchNorm2d) else m.in_features * y.numel()

    run_hooked(model, image_size, lambda work: (ops, [m.register_forward_hook(hook) for m in work.modules()
                                                      if isinstance(m, flops.COUNTED)]))
    return ops[0]


def published_count(net: str, compress_rate: Optional[Sequence[float]] = None,
                    image_size: Optional[int] = None) -> PublishedCount:
    """The original project's ``Params`` / ``Flops`` (and per-layer lines for VGG16-SSD), rule for rule."""
    rates = layer_rates(compress_rate, num_prunable(net))
    if net == "vgg16-ssd":
        return _vgg(rates, int(image_size or 300))
    clf, size = mb1_classifier(rates), int(image_size or MB1_IMAGE_SIZE)
    return PublishedCount(net, rates, size, float(sum(p.numel() for p in clf.parameters())), old_thop_ops(clf, size))


def published_for(net: str, rates: Sequence[float]) -> Optional[Dict[str, float]]:
    """The original's published figures for this net and rate list, if it published any."""
    return next((fig for (n, spec), fig in PUBLISHED.items()
                 if n == net and layer_rates(parse_compress_rate(spec), num_prunable(n)) == list(rates)), None)


def _why(res: PublishedCount, df: pd.DataFrame) -> str:
    """In one line, why the published figures differ from ``df``, the exact count (:func:`count_exact`)."""
    if res.net != "vgg16-ssd":
        return (f"the ImageNet classifier ({MB1_CLASSES} classes, no SSD extras or heads) at {res.image_size}x"
                f"{res.image_size}, thop 0.0.x rules (BatchNorm: 2 ops per element)")
    convs = [ln for ln in res.lines if ln.rate is not None]
    own_macs = df[df["name"].isin({ln.name for ln in convs})]["MACs"].sum()
    fc6_name = f"base_net.{vgg16_ssd.CONV_INDEXES[13]}"
    theirs = next(ln.their_out_size for ln in convs if ln.name == fc6_name)
    fc6 = df[df["name"] == fc6_name].iloc[0]
    return (f"only the {len(convs)} convs with a compress rate ({1 - own_macs / df['MACs'].sum():.0%} of the MACs "
            f"left out: fc7, BatchNorm, extras, heads); fc6 as {theirs}x{theirs}, not {fc6['out_h']}x{fc6['out_w']} "
            f"(dilation ignored)" + ("; pruned filters removed twice" if any(res.rates) else ""))


def _exact(res: PublishedCount, num_classes: int) -> pd.DataFrame:
    return count_exact(build_for_counting(res.net, num_classes, compress_rate=res.rates))


def published_explanation(res: PublishedCount, num_classes: int = 21) -> List[str]:
    """Numbered reasons, with computed numbers, why the published figures differ from the exact count."""
    df = _exact(res, num_classes)
    tot = totals(df)
    reasons = [f"Their count: {_why(res, df)}. Their 'Flops' are MACs: {res.flops:.0f} MACs ~= "
               f"{2 * res.flops:.0f} FLOPs."]
    if res.net != "vgg16-ssd":
        clf = mb1_classifier(res.rates)
        reasons.append(f"The same rules give {old_thop_ops(clf, 224):.0f} at 224x224 (ImageNet's size) and "
                       f"{old_thop_ops(clf, 300):.0f} at 300x300 (the SSD's).")
    reasons.append(f"Net effect: exact whole detector ({num_classes} classes, {df.attrs['image_size']}x"
                   f"{df.attrs['image_size']}) {tot['params']} params / {tot['MACs']} MACs vs published "
                   f"{res.params:.0f} / {res.flops:.0f} (params x{tot['params'] / res.params:.3f}, "
                   f"MACs x{tot['MACs'] / res.flops:.3f}).")
    native = res.image_size == (300 if res.net == "vgg16-ssd" else MB1_IMAGE_SIZE)
    pub = published_for(res.net, res.rates) if native else None
    if pub is not None:
        ok = pub["params"] == res.params and pub["flops"] == res.flops
        reasons.append(f"The original project published Params {pub['params']:.2f} / Flops {pub['flops']:.2f} for "
                       f"this configuration: {'reproduced to the digit' if ok else 'NOT reproduced'} (here "
                       f"{res.params:.2f} / {res.flops:.2f}).")
    return [f"{i}. {s}" for i, s in enumerate(reasons, 1)]


def print_published_table(net: str = "vgg16-ssd", compress_rate: Optional[Sequence[float]] = None,
                          num_classes: int = 21, image_size: Optional[int] = None, file=None) -> PublishedCount:
    """Print the original's table (same format, same digits) and, after it, why it differs from the exact count."""
    res = published_count(net, compress_rate, image_size)
    print(res.text(), "\nWhy these differ from the exact count (python -m hrank_ssd flops --style exact):",
          *published_explanation(res, num_classes), sep="\n", file=file or sys.stdout)
    return res


DEFAULT_ROWS: Tuple[Tuple[str, str, Optional[List[float]]], ...] = (
    ("VGG16-SSD", "vgg16-ssd", None), ("VGG16-SSD pruned", "vgg16-ssd", PRUNED_RATE),
    ("MobileNetV1-SSD", "mb1-ssd", None))


def flops_table(rows: Optional[Iterable[Tuple[str, str, Optional[Sequence[float]]]]] = None,
                num_classes: int = 21) -> pd.DataFrame:
    """One row per (label, net, compress_rate): exact params / MACs, published figures, ratios to the first row."""
    out = []
    for label, net, rate in rows or DEFAULT_ROWS:
        t = totals(count_exact(build_for_counting(net, num_classes, compress_rate=rate)))
        pub = published_count(net, rate)
        out.append({"model": label, "net": net, "compress_rate": format_compress_rate(pub.rates),
                    "params": t["params"], "MACs": t["MACs"], "GMACs": t["MACs"] / 1e9,
                    "published_params": pub.params, "published_flops": pub.flops})
    df = pd.DataFrame(out)
    df["params_ratio"] = df["params"] / df["params"].iloc[0]
    df["MACs_ratio"] = df["MACs"] / df["MACs"].iloc[0]
    df.attrs["note"] = flops.MAC_NOTE
    return df


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
                    "MACs_per_published": row.MACs / res.flops, "why": _why(res, _exact(res, num_classes))})
    return pd.DataFrame(out)
