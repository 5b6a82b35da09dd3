"""SSD detectors with pytorch-ssd's exact module layout, so its published checkpoints load with strict=True.

A model is described by its *channel plan*: the output channels of every backbone conv and extra
layer. Width multipliers, compress rates and pruned checkpoints all become a plan, so one builder
serves the full model, a tiny course model and any pruned variant.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from hrank_ssd.errors import HRankError
from hrank_ssd.io.files import atomic_save, atomic_write_text  # noqa: F401  (re-exported: models.atomic_save)
from hrank_ssd.nets.compress import parse_compress_rate
from hrank_ssd.nets.config import NetConfig, get_config
from hrank_ssd.nets.priors import generate_priors

# Indices of the convs inside pytorch-ssd's VGG base_net (conv1_1 ... conv5_3, fc6, fc7).
VGG_CONV_INDEXES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28, 31, 33)
VGG_CHANNELS = (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024)
VGG_LAYER_NAMES = ("conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3",
                   "conv4_1", "conv4_2", "conv4_3", "conv5_1", "conv5_2", "conv5_3", "fc6", "fc7")
VGG_POOL_AFTER = {1: "M", 3: "M", 6: "C", 9: "M"}  # after conv k (0-based): pool kind
VGG_BN_SOURCE = 23  # base_net[:23] ends with conv4_3's ReLU; the BatchNorm add-on feeds header 0
# MobileNetV1: block 0 is conv_bn(3, 32, stride 2); blocks 1..13 are depthwise-separable.
MB1_CHANNELS = (32, 64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024)
MB1_STRIDES = (2, 1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1)
MB1_SOURCES = (12, 14)
EXTRA_CHANNELS = ((256, 512), (128, 256), (128, 256), (128, 256))
NUM_PRUNABLE = {"vgg16-ssd": 14, "mb1-ssd": 14}


@dataclass
class ChannelPlan:
    """Output channels of the backbone convs and of the extras ((1x1, 3x3) per block)."""

    base: List[int]
    extras: List[Tuple[int, int]]

    @property
    def prunable(self) -> List[int]:
        return self.base[:14]


def default_plan(net: str, width: float = 1.0) -> ChannelPlan:
    get_config(net)
    base = VGG_CHANNELS if net == "vgg16-ssd" else MB1_CHANNELS
    scale = lambda c: max(1, int(round(c * width)))  # noqa: E731
    return ChannelPlan([scale(c) for c in base], [(scale(a), scale(b)) for a, b in EXTRA_CHANNELS])


def kept_channels(channels: int, rate: float) -> int:
    """Filters a layer keeps at ``rate``: ``int(c * (1 - rate))`` as in HRank, never fewer than 1."""
    return max(1, int(channels * (1 - rate)))


def plan_with_rates(plan: ChannelPlan, rates: Sequence[float]) -> ChannelPlan:
    base = list(plan.base)
    for i, rate in enumerate(rates):
        base[i] = kept_channels(base[i], rate)
    return ChannelPlan(base, list(plan.extras))


class SSD(nn.Module):
    """Backbone + extras + per-scale headers. ``forward`` returns raw (confidences, locations)."""

    def __init__(self, cfg: NetConfig, num_classes: int, base_net: nn.Sequential,
                 source_layer_indexes: Sequence[int], source_layer_add_ons: Dict[int, nn.Module],
                 extras: nn.ModuleList, classification_headers: nn.ModuleList,
                 regression_headers: nn.ModuleList, plan: ChannelPlan, image_size: int):
        super().__init__()
        self.cfg, self.num_classes, self.plan, self.image_size = cfg, num_classes, plan, image_size
        self.base_net = base_net
        self.source_layer_indexes = list(source_layer_indexes)
        self._add_on_at = {idx: k for k, idx in enumerate(source_layer_add_ons)}
        self.source_layer_add_ons = nn.ModuleList(source_layer_add_ons.values())
        self.extras = extras
        self.classification_headers = classification_headers
        self.regression_headers = regression_headers
        sizes = self.feature_map_sizes(image_size)
        if min(sizes) < 1:
            raise HRankError(f"--image_size {image_size} is too small for {cfg.name}: its last feature "
                             f"maps would be {sizes}; use at least 300 for vgg16-ssd")
        self.register_buffer("priors", generate_priors(cfg, sizes, image_size), persistent=False)

    def sources(self, x: torch.Tensor) -> List[torch.Tensor]:
        """The feature maps the headers see, in header order."""
        feats, start = [], 0
        for end in self.source_layer_indexes:
            for i in range(start, end):
                x = self.base_net[i](x)
            add_on = self._add_on_at.get(end)
            feats.append(self.source_layer_add_ons[add_on](x) if add_on is not None else x)
            start = end
        for block in self.extras:
            x = block(x)
            feats.append(x)
        return feats

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        confs, locs = [], []
        n = x.size(0)
        for feat, cls, reg in zip(self.sources(x), self.classification_headers, self.regression_headers):
            confs.append(cls(feat).permute(0, 2, 3, 1).reshape(n, -1, self.num_classes))
            locs.append(reg(feat).permute(0, 2, 3, 1).reshape(n, -1, 4))
        return torch.cat(confs, 1), torch.cat(locs, 1)

    def feature_map_sizes(self, image_size: int) -> List[int]:
        """Spatial size of each source feature map, computed from the layers' own arithmetic."""
        sizes, size, start = [], image_size, 0
        for end in self.source_layer_indexes:
            for i in range(start, end):
                size = _out_size(self.base_net[i], size)
            sizes.append(size)
            start = end
        for block in self.extras:
            for layer in block:
                size = _out_size(layer, size)
            sizes.append(size)
        return sizes


def _out_size(module: nn.Module, size: int) -> int:
    if isinstance(module, nn.Sequential):
        for m in module:
            size = _out_size(m, size)
        return size
    if isinstance(module, (nn.Conv2d, nn.MaxPool2d)):
        k, s, p, d = (module.kernel_size, module.stride, module.padding, module.dilation)
        k, s, p, d = (v if isinstance(v, int) else v[0] for v in (k, s, p, d))
        span = size + 2 * p - d * (k - 1) - 1
        ceil = getattr(module, "ceil_mode", False)
        out = (math.ceil(span / s) if ceil else span // s) + 1
        return out if span >= 0 else 0
    return size


def _extras(in_channels: int, plan: ChannelPlan, net: str) -> nn.ModuleList:
    blocks = []
    for k, (mid, out) in enumerate(plan.extras):
        stride, pad = (2, 1) if (net == "mb1-ssd" or k < 2) else (1, 0)
        blocks.append(nn.Sequential(nn.Conv2d(in_channels, mid, 1), nn.ReLU(),
                                    nn.Conv2d(mid, out, 3, stride=stride, padding=pad), nn.ReLU()))
        in_channels = out
    return nn.ModuleList(blocks)


def _headers(source_channels: Sequence[int], cfg: NetConfig, num_classes: int):
    boxes = [s.boxes_per_location for s in cfg.specs]
    cls = nn.ModuleList(nn.Conv2d(c, b * num_classes, 3, padding=1) for c, b in zip(source_channels, boxes))
    reg = nn.ModuleList(nn.Conv2d(c, b * 4, 3, padding=1) for c, b in zip(source_channels, boxes))
    return cls, reg


def _vgg_ssd(num_classes: int, plan: ChannelPlan, image_size: int) -> SSD:
    cfg = get_config("vgg16-ssd")
    layers: List[nn.Module] = []
    in_c = 3
    for k, out in enumerate(plan.base[:13]):
        layers += [nn.Conv2d(in_c, out, 3, padding=1), nn.ReLU(inplace=True)]
        pool = VGG_POOL_AFTER.get(k)
        if pool:
            layers.append(nn.MaxPool2d(2, 2, ceil_mode=pool == "C"))
        in_c = out
    fc6, fc7 = plan.base[13], plan.base[14]
    layers += [nn.MaxPool2d(3, 1, 1), nn.Conv2d(in_c, fc6, 3, padding=6, dilation=6), nn.ReLU(inplace=True),
               nn.Conv2d(fc6, fc7, 1), nn.ReLU(inplace=True)]
    base = nn.Sequential(*layers)
    conv4_3 = plan.base[9]
    sources = [conv4_3, fc7] + [out for _, out in plan.extras]
    cls, reg = _headers(sources, cfg, num_classes)
    return SSD(cfg, num_classes, base, [VGG_BN_SOURCE, len(base)], {VGG_BN_SOURCE: nn.BatchNorm2d(conv4_3)},
               _extras(fc7, plan, "vgg16-ssd"), cls, reg, plan, image_size)


def _mb1_ssd(num_classes: int, plan: ChannelPlan, image_size: int) -> SSD:
    cfg = get_config("mb1-ssd")
    first = plan.base[0]
    blocks = [nn.Sequential(nn.Conv2d(3, first, 3, 2, 1, bias=False), nn.BatchNorm2d(first), nn.ReLU(inplace=True))]
    in_c = first
    for out, stride in zip(plan.base[1:], MB1_STRIDES[1:]):
        blocks.append(nn.Sequential(
            nn.Conv2d(in_c, in_c, 3, stride, 1, groups=in_c, bias=False), nn.BatchNorm2d(in_c), nn.ReLU(inplace=True),
            nn.Conv2d(in_c, out, 1, 1, 0, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True)))
        in_c = out
    sources = [plan.base[11], plan.base[13]] + [out for _, out in plan.extras]
    cls, reg = _headers(sources, cfg, num_classes)
    return SSD(cfg, num_classes, nn.Sequential(*blocks), MB1_SOURCES, {}, _extras(plan.base[13], plan, "mb1-ssd"),
               cls, reg, plan, image_size)


def build_model(net: str, num_classes: int, compress_rate=None, width: float = 1.0,
                image_size: Optional[int] = None, plan: Optional[ChannelPlan] = None) -> SSD:
    """Build ``vgg16-ssd`` or ``mb1-ssd`` with random weights.

    ``compress_rate`` (a list or the original string syntax) shrinks the prunable layers to
    ``int(c * (1 - rate))`` filters; ``width`` scales every layer first (small course models).
    """
    cfg = get_config(net)
    if num_classes < 2:
        raise HRankError(f"num_classes must be at least 2 (BACKGROUND + one class), got {num_classes}")
    if plan is None:
        plan = default_plan(net, width)
        if compress_rate is not None:
            plan = plan_with_rates(plan, parse_compress_rate(compress_rate, NUM_PRUNABLE[net]))
    builder = _vgg_ssd if net == "vgg16-ssd" else _mb1_ssd
    return builder(num_classes, plan, image_size or cfg.image_size)


@torch.no_grad()
def init_from_scratch(model: SSD, images: torch.Tensor, background_prior: float = 0.99) -> SSD:
    """Initialise a detector that has no pretrained weights so it trains fast (small course models).

    VGG has no BatchNorm and sees mean-subtracted pixels of std ~60, so PyTorch's default init makes
    activations explode or vanish across 15 layers. Each backbone/extra conv gets Kaiming weights,
    then is rescaled so its output on ``images`` has unit std (LSUV, Mishkin & Matas 2016); headers
    start small, with class biases that give BACKGROUND ``background_prior`` (Lin et al. 2017).
    """
    heads = list(model.classification_headers) + list(model.regression_headers)  # a list: fixed RNG order
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and all(m is not h for h in heads)]
    for conv in convs:
        nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
        if conv.bias is not None:
            nn.init.zeros_(conv.bias)
    was_training = model.training
    model.eval()
    # One pass along the backbone chain: each conv is rescaled as its input arrives, which is what a full
    # forward per conv would see (the convs before it are already rescaled), at the cost of one forward.
    to_init = {id(c) for c in convs}
    x = images
    for layer in _chain_layers(model):
        x = layer(x)
        if id(layer) in to_init:
            std = x.std().clamp(min=1e-6)
            layer.weight.div_(std)
            x = x / std  # the bias is zero: the rescaled conv's output exactly
            to_init.discard(id(layer))
    if to_init:
        raise HRankError(f"{len(to_init)} conv layers lie off the backbone chain: LSUV cannot reach them")
    n = model.num_classes
    for head in heads:
        nn.init.normal_(head.weight, std=0.01)
        nn.init.zeros_(head.bias)
    bias = math.log(background_prior * (n - 1) / (1 - background_prior))
    for head in model.classification_headers:
        head.bias.view(-1, n)[:, 0] = bias
    return model.train(was_training)


def _chain_layers(model: SSD):
    """The leaf layers the backbone runs in order (base net up to the last source, then the extras)."""
    def leaves(module):
        if isinstance(module, nn.Sequential):
            for child in module:
                yield from leaves(child)
        else:
            yield module

    for i in range(model.source_layer_indexes[-1]):
        yield from leaves(model.base_net[i])
    for block in model.extras:
        yield from leaves(block)


# ---------------------------------------------------------------- checkpoints

THOP_KEYS = ("total_ops", "total_params")


def detect_net(state: Dict[str, torch.Tensor]) -> str:
    if "base_net.0.0.weight" in state:
        return "mb1-ssd"
    if "base_net.0.weight" in state:
        return "vgg16-ssd"
    raise HRankError("this checkpoint holds no SSD backbone (no base_net.0 weights): "
                     "pass a pytorch-ssd VGG16-SSD or MobileNetV1-SSD checkpoint")


# ---------------------------------------------------------------- prunable layers by name


def layer_names(net: str) -> List[str]:
    if net == "vgg16-ssd":
        return list(VGG_LAYER_NAMES[:14])
    return ["conv0"] + [f"conv{b}_pw" for b in range(1, 14)]


def producer_key(net: str, layer: int) -> str:
    """State-dict prefix of prunable layer ``layer``'s conv (0-based)."""
    if net == "vgg16-ssd":
        return f"base_net.{VGG_CONV_INDEXES[layer]}"
    return "base_net.0.0" if layer == 0 else f"base_net.{layer}.3"


def activation_key(net: str, layer: int) -> str:
    """Module whose output is the layer's feature map after ReLU (hooked by rank generation)."""
    if net == "vgg16-ssd":
        return f"base_net.{VGG_CONV_INDEXES[layer] + 1}"
    return "base_net.0.2" if layer == 0 else f"base_net.{layer}.5"


def plan_from_state_dict(state: Dict[str, torch.Tensor], net: str) -> ChannelPlan:
    """Channel widths read off the checkpoint's weight shapes (works for pruned checkpoints)."""
    try:
        base = [state[f"{producer_key(net, i)}.weight"].shape[0] for i in range(len(default_plan(net).base))]
        extras = [(state[f"extras.{k}.0.weight"].shape[0], state[f"extras.{k}.2.weight"].shape[0])
                  for k in range(4)]
    except KeyError as e:
        raise HRankError(f"checkpoint is missing {e.args[0]}: it is not a complete {net} state dict") from None
    return ChannelPlan([int(c) for c in base], [(int(a), int(b)) for a, b in extras])


def read_state_dict(path) -> Dict[str, torch.Tensor]:
    """Load a state dict from a plain ``.pth`` or a training checkpoint, with clear errors."""
    path = Path(path)
    if not path.is_file():
        raise HRankError(f"checkpoint not found: {path} (check the path, or fetch it with "
                         f"`python -m hrank_ssd download`)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for truncated/corrupt files
        raise HRankError(f"cannot read checkpoint {path}: {type(e).__name__} ({str(e).splitlines()[0][:120]}); "
                         f"the file is corrupt or not a PyTorch checkpoint, download or train it again") from None
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise HRankError(f"{path} is not a state dict of tensors; save models with torch.save(model.state_dict())")
    return {k.removeprefix("module."): v for k, v in obj.items() if k.rsplit(".", 1)[-1] not in THOP_KEYS}


def sidecar_path(path) -> Path:
    return Path(str(path) + ".json") if not str(path).endswith(".json") else Path(path)


def read_sidecar(path) -> dict:
    side = sidecar_path(path)
    if side.is_file():
        try:
            return json.loads(side.read_text())
        except json.JSONDecodeError:
            raise HRankError(f"{side} is not valid JSON; delete it or restore it from the model's folder") from None
    return {}


def num_classes_of(state: Dict[str, torch.Tensor], net: str, path="checkpoint") -> int:
    """Classes (BACKGROUND included) a detector state dict predicts, read off its first header."""
    header = state.get("classification_headers.0.weight")
    if header is None:
        raise HRankError(f"checkpoint {path} has no classification_headers.0.weight: not an SSD detector")
    return header.shape[0] // get_config(net).specs[0].boxes_per_location


def load_model(path, net: Optional[str] = None, num_classes: Optional[int] = None, compress_rate=None,
               image_size: Optional[int] = None) -> SSD:
    """Load a checkpoint, inferring net, class count and (pruned) channel widths from its shapes.

    ``net``/``num_classes``/``compress_rate`` are checks: a disagreement is a clear error naming
    the first mismatching layer. The input size comes from ``image_size``, else the JSON sidecar
    written by :func:`save_model`, else the net's default (300).
    """
    return model_from_state_dict(read_state_dict(path), path, net, num_classes, compress_rate, image_size)


def model_from_state_dict(state: Dict[str, torch.Tensor], path="checkpoint", net: Optional[str] = None,
                          num_classes: Optional[int] = None, compress_rate=None,
                          image_size: Optional[int] = None) -> SSD:
    """:func:`load_model` on a state dict already read from ``path`` (named in errors; its sidecar gives the size)."""
    found = detect_net(state)
    if net is not None and net != found:
        raise HRankError(f"{path} is a {found} checkpoint, not {net}: pass --net {found} or another checkpoint")
    found_classes = num_classes_of(state, found, path)
    if num_classes is not None and num_classes != found_classes:
        raise HRankError(f"{path} predicts {found_classes} classes (BACKGROUND included) but the label file has "
                         f"{num_classes}: use the label file the model was trained with")
    plan = plan_from_state_dict(state, found)
    if compress_rate is not None:
        check_plan(plan, found, compress_rate, path)
    meta = read_sidecar(path)
    model = build_model(found, found_classes, plan=plan, image_size=image_size or meta.get("image_size"))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).split("\n\t", 1)[-1].splitlines()[0][:200]
        raise HRankError(f"{path} does not fit the {found} layout: {first}") from None
    return model


def check_plan(plan: ChannelPlan, net: str, compress_rate, path="checkpoint") -> None:
    rates = parse_compress_rate(compress_rate, NUM_PRUNABLE[net])
    expected = plan_with_rates(default_plan(net), rates)
    names = layer_names(net)
    for i, (want, got) in enumerate(zip(expected.prunable, plan.prunable)):
        if want != got:
            raise HRankError(f"{path} does not match --compress_rate: layer {i + 1} ({names[i]}) should have "
                             f"{want} filters but has {got}; drop --compress_rate to infer widths from the file")


@dataclass
class ModelMeta:
    net: str
    num_classes: int
    image_size: int
    compress_rate: Optional[List[float]] = None
    criterion: Optional[str] = None
    kept_indices: Optional[Dict[str, List[int]]] = None


def clean_state_dict(model: nn.Module) -> Dict[str, torch.Tensor]:
    """The model's state dict without thop's counters or DDP's ``module.`` prefix."""
    model = getattr(model, "module", model)
    return {k: v for k, v in model.state_dict().items() if k.rsplit(".", 1)[-1] not in THOP_KEYS}


def save_model(model: SSD, path, **extra) -> None:
    """Write a plain (pytorch-ssd loadable) state dict and a JSON sidecar describing it."""
    model = getattr(model, "module", model)
    meta = ModelMeta(net=model.cfg.name, num_classes=model.num_classes, image_size=model.image_size, **extra)
    atomic_save(clean_state_dict(model), path)
    atomic_write_text(sidecar_path(path), json.dumps(asdict(meta), indent=1))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
