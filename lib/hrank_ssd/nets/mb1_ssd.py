"""MobileNetV1-SSD in pytorch-ssd's layout; prunable: block 0's conv and the 13 pointwise convs."""

from __future__ import annotations

from typing import Dict, Optional

from torch import nn

from hrank_ssd.nets.spec import NetConfig, NetSpec, PriorSpec, Rule, header_rules
from hrank_ssd.nets.ssd import SSD, ChannelPlan, extra_blocks, headers

CONFIG = NetConfig(
    name="mb1-ssd",
    image_size=300,
    image_mean=(127.0, 127.0, 127.0),
    image_std=128.0,
    specs=(
        PriorSpec(19, 16, 60, 105, (2, 3)),
        PriorSpec(10, 32, 105, 150, (2, 3)),
        PriorSpec(5, 64, 150, 195, (2, 3)),
        PriorSpec(3, 100, 195, 240, (2, 3)),
        PriorSpec(2, 150, 240, 285, (2, 3)),
        PriorSpec(1, 300, 285, 330, (2, 3)),
    ),
)
CHANNELS = (32, 64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024)
STRIDES = (2, 1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1)
SOURCES = (12, 14)  # base_net[:12] ends with block 11 (19x19), base_net[:14] with block 13 (10x10)
EXTRAS = ((256, 512), (128, 256), (128, 256), (128, 256))
EXTRA_STRIDE_PADDING = ((2, 1),) * 4
LAYER_NAMES = ("conv0",) + tuple(f"conv{b}_pw" for b in range(1, 14))
STAGES = (("150x150", 2), ("75x75", 2), ("38x38", 2), ("19x19", 6), ("10x10", 2))  # by output resolution


def build(num_classes: int, plan: ChannelPlan, image_size: int) -> SSD:
    """MobileNetV1-SSD with the widths of ``plan`` (random weights)."""
    first = plan.base[0]
    blocks = [nn.Sequential(nn.Conv2d(3, first, 3, 2, 1, bias=False), nn.BatchNorm2d(first), nn.ReLU(inplace=True))]
    in_c = first
    for out, stride in zip(plan.base[1:], STRIDES[1:]):
        blocks.append(nn.Sequential(
            nn.Conv2d(in_c, in_c, 3, stride, 1, groups=in_c, bias=False), nn.BatchNorm2d(in_c), nn.ReLU(inplace=True),
            nn.Conv2d(in_c, out, 1, 1, 0, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True)))
        in_c = out
    cls, reg = headers([plan.base[11], plan.base[13]] + [out for _, out in plan.extras], CONFIG, num_classes)
    return SSD(CONFIG, num_classes, nn.Sequential(*blocks), SOURCES, {},
               extra_blocks(plan.base[13], plan.extras, EXTRA_STRIDE_PADDING), cls, reg, plan, image_size)


def producer_key(layer: int) -> str:
    return "base_net.0.0" if layer == 0 else f"base_net.{layer}.3"  # block 0's conv, else the pointwise conv


def activation_key(layer: int) -> str:
    return "base_net.0.2" if layer == 0 else f"base_net.{layer}.5"


def slice_rules() -> Dict[str, Rule]:
    rules: Dict[str, Rule] = {"base_net.0.0": (0, None), "base_net.0.1": (0, None)}
    for b in range(1, 14):
        rules[f"base_net.{b}.0"] = (b - 1, None)  # depthwise: its channels are the producer's
        rules[f"base_net.{b}.1"] = (b - 1, None)
        rules[f"base_net.{b}.3"] = (b, b - 1)
        rules[f"base_net.{b}.4"] = (b, None)
    rules["extras.0.0"] = (None, 13)
    return {**rules, **header_rules({SOURCES[0] - 1: 0, SOURCES[1] - 1: 1})}


def layer_of_module(name: str) -> Optional[int]:
    parts = name.split(".")
    return int(parts[1]) if parts[0] == "base_net" and len(parts) >= 2 else None


def module_label(name: str) -> Optional[str]:
    parts = name.split(".")
    if parts[0] != "base_net" or len(parts) != 3:
        return None
    kinds = {"0": "conv", "1": "bn"} if parts[1] == "0" else {"0": "dw", "1": "dw_bn", "3": "pw", "4": "pw_bn"}
    return f"block{parts[1]}.{kinds.get(parts[2], parts[2])}"


SPEC = NetSpec(name="mb1-ssd", config=CONFIG, channels=CHANNELS, extras=EXTRAS,
               layer_names=LAYER_NAMES, build=build, producer_key=producer_key, activation_key=activation_key,
               slice_rules=slice_rules, layer_of_module=layer_of_module, stages=STAGES, module_label=module_label)
