"""Models from net names and checkpoints, checkpoints (+ JSON sidecar) from models, and whether a download fits its
manifest entry (``fit_problem``)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch
from torch import nn

from hrank_ssd.errors import HRankError
from hrank_ssd.io.files import atomic_save, atomic_write_text
from hrank_ssd.nets.compress import layer_rates, parse_compress_rate
from hrank_ssd.nets.registry import get_net, net_names, num_prunable
from hrank_ssd.nets.ssd import SSD, ChannelPlan, plan_with_rates


def default_plan(net: str, width: float = 1.0) -> ChannelPlan:
    """The net's widths, each scaled by ``width`` (at least one channel)."""
    spec = get_net(net)
    scale = lambda c: max(1, int(round(c * width)))  # noqa: E731
    return ChannelPlan([scale(c) for c in spec.channels], [(scale(a), scale(b)) for a, b in spec.extras],
                       spec.num_prunable)


def build_model(net: str, num_classes: int, compress_rate: Optional[Sequence[float]] = None, width: float = 1.0,
                image_size: Optional[int] = None, plan: Optional[ChannelPlan] = None) -> SSD:
    """A registered net with random weights; ``width`` scales every layer, then ``compress_rate`` the prunable ones."""
    spec = get_net(net)
    if num_classes < 2:
        raise HRankError(f"num_classes must be at least 2 (BACKGROUND + one class), got {num_classes}")
    if plan is None:
        plan = default_plan(net, width)
        if compress_rate is not None:
            plan = plan_with_rates(plan, layer_rates(compress_rate, spec.num_prunable))
    return spec.build(num_classes, plan, image_size or spec.config.image_size)


@torch.no_grad()
def init_from_scratch(model: SSD, images: torch.Tensor, background_prior: float = 0.99) -> SSD:
    """Initialise a detector to train fast from scratch: convs rescaled to unit output std on ``images`` (LSUV),
    small headers whose biases give BACKGROUND ``background_prior``."""
    heads = list(model.classification_headers) + list(model.regression_headers)  # a list: fixed RNG order
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and all(m is not h for h in heads)]
    for conv in convs:
        nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
        if conv.bias is not None:
            nn.init.zeros_(conv.bias)
    was_training = model.training
    model.eval()
    # one pass along the backbone chain: each conv is rescaled as its (already rescaled) input arrives
    to_init = {id(c) for c in convs}
    x = images
    blocks = [*model.base_net[:model.source_layer_indexes[-1]], *model.extras]
    for layer in (m for block in blocks for m in block.modules() if not isinstance(m, nn.Sequential)):
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


THOP_KEYS = ("total_ops", "total_params")


def detect_net(state: Dict[str, torch.Tensor]) -> str:
    """The registered net whose backbone convs sit exactly where this state dict has base_net weights."""
    have = {k.split(".")[1] for k in state if k.startswith("base_net.") and k.endswith("weight")}
    for name in net_names():
        spec = get_net(name)
        if have == {spec.producer_key(i).split(".")[1] for i in range(len(spec.channels))}:
            return name
    raise HRankError("this checkpoint's backbone matches none of " + ", ".join(net_names()) +
                     ": pass a pytorch-ssd VGG16-SSD or MobileNetV1-SSD checkpoint")


def layer_names(net: str) -> List[str]:
    """Names of the net's prunable layers, in HRank's order (``rank_conv1.npy`` is the first)."""
    return list(get_net(net).layer_names)


def plan_from_state_dict(state: Dict[str, torch.Tensor], net: str) -> ChannelPlan:
    """Channel widths read off the checkpoint's weight shapes (works for pruned checkpoints)."""
    spec = get_net(net)
    try:
        base = [state[f"{spec.producer_key(i)}.weight"].shape[0] for i in range(len(spec.channels))]
        extras = [(state[f"extras.{k}.0.weight"].shape[0], state[f"extras.{k}.2.weight"].shape[0])
                  for k in range(len(spec.extras))]
    except KeyError as e:
        raise HRankError(f"checkpoint is missing {e.args[0]}: it is not a complete {net} state dict") from None
    return ChannelPlan([int(c) for c in base], [(int(a), int(b)) for a, b in extras], spec.num_prunable)


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
    """``model.pth`` -> ``model.pth.json``."""
    return Path(str(path) + ".json") if not str(path).endswith(".json") else Path(path)


def read_sidecar(path) -> dict:
    """The JSON written beside a checkpoint by :func:`save_model` (net, classes, size, rates, kept filters), or {}."""
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
    return header.shape[0] // get_net(net).config.specs[0].boxes_per_location


def load_model(path, net: Optional[str] = None, num_classes: Optional[int] = None,
               compress_rate: Optional[Sequence[float]] = None, image_size: Optional[int] = None,
               state: Optional[Dict[str, torch.Tensor]] = None) -> SSD:
    """Load a checkpoint (``state``: its state dict, already read), net, classes and widths read off its shapes;
    ``net``, ``num_classes`` and ``compress_rate`` are checks; the input size: ``image_size``, else the sidecar's,
    else the net's."""
    state = read_state_dict(path) if state is None else state
    found = detect_net(state)
    if net is not None and net != found:
        raise HRankError(f"{path} is a {found} checkpoint, not {net}: pass --net {found} or another checkpoint")
    found_classes = num_classes_of(state, found, path)
    if num_classes is not None and num_classes != found_classes:
        raise HRankError(f"{path} predicts {found_classes} classes (BACKGROUND included) but the label file has "
                         f"{num_classes}: use the label file the model was trained with")
    plan = plan_from_state_dict(state, found)
    if compress_rate is not None:  # the first layer whose width the rates do not give is an error
        for i, (want, got) in enumerate(zip(expected_widths(found, compress_rate), plan.prunable)):
            if want != got:
                raise HRankError(f"{path} does not match --compress_rate: layer {i + 1} ({layer_names(found)[i]}) "
                                 f"should have {want} filters but has {got}; drop --compress_rate to infer widths "
                                 "from the file")
    meta = read_sidecar(path)
    model = build_model(found, found_classes, plan=plan, image_size=image_size or meta.get("image_size"))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).split("\n\t", 1)[-1].splitlines()[0][:200]
        raise HRankError(f"{path} does not fit the {found} layout: {first}") from None
    return model


def clean_state_dict(model: nn.Module) -> Dict[str, torch.Tensor]:
    """The model's state dict without thop's counters or DDP's ``module.`` prefix, in NCHW layout."""
    model = getattr(model, "module", model)
    return {k: v.contiguous() for k, v in model.state_dict().items() if k.rsplit(".", 1)[-1] not in THOP_KEYS}


def save_model(model: SSD, path, compress_rate=None, criterion=None, kept_indices=None, widths=None, budget=None,
               made_by=None) -> None:
    """Write a plain (pytorch-ssd loadable) state dict and its JSON sidecar: net, classes, size, the pruning it
    carries (rates or a budget's widths, criterion, kept filters) and, only when given, ``made_by`` (notebook 02)."""
    model = getattr(model, "module", model)
    meta = {"net": model.cfg.name, "num_classes": model.num_classes, "image_size": model.image_size,
            "compress_rate": compress_rate, "criterion": criterion, "kept_indices": kept_indices, "widths": widths,
            "budget": budget}
    if made_by is not None:
        meta["made_by"] = made_by
    atomic_save(clean_state_dict(model), path)
    atomic_write_text(sidecar_path(path), json.dumps(meta, indent=1))


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (weights, biases, BatchNorm scales and shifts; not BatchNorm's running statistics)."""
    return sum(p.numel() for p in model.parameters())


def expected_widths(net: str, compress_rate=None) -> list:
    """Filters of each prunable layer of ``net`` pruned at ``compress_rate`` (a list, or text; None: unpruned)."""
    rates = parse_compress_rate(compress_rate) if isinstance(compress_rate, str) else compress_rate
    return plan_with_rates(default_plan(net), layer_rates(rates, num_prunable(net))).prunable


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
    rate = art.get("compress_rate") or None
    want = expected_widths(net, rate)
    if widths == want:
        return None
    i = next(k for k, (a, b) in enumerate(zip(want, widths)) if a != b)
    what = "an unpruned" if widths == expected_widths(net, None) else "a differently pruned"
    target = f"compress rate {rate}" if rate else f"the unpruned {net}"
    return (f"{what} {net} checkpoint, not the one the manifest names: layer {i + 1} ({layer_names(net)[i]}) has "
            f"{widths[i]} filters where {target} gives {want[i]}")
