"""VGG16-SSD (Liu et al. 2016) in pytorch-ssd's layout: ``base_net.N`` convs, BatchNorm on conv4_3, 4 extras."""

from __future__ import annotations

from typing import Dict, List, Optional

from torch import nn

from hrank_ssd.nets.compress import PRUNED_RATE
from hrank_ssd.nets.spec import NetConfig, NetSpec, PriorSpec, Rule, chain_rules, header_rules
from hrank_ssd.nets.ssd import SSD, ChannelPlan, extra_blocks, headers

CONFIG = NetConfig(
    name="vgg16-ssd",
    image_size=300,
    image_mean=(123.0, 117.0, 104.0),
    image_std=1.0,
    specs=(
        PriorSpec(38, 8, 30, 60, (2,)),
        PriorSpec(19, 16, 60, 111, (2, 3)),
        PriorSpec(10, 32, 111, 162, (2, 3)),
        PriorSpec(5, 64, 162, 213, (2, 3)),
        PriorSpec(3, 100, 213, 264, (2,)),
        PriorSpec(1, 300, 264, 315, (2,)),
    ),
)
# Indices of the convs inside pytorch-ssd's VGG base_net (conv1_1 ... conv5_3, fc6, fc7).
CONV_INDEXES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28, 31, 33)
CHANNELS = (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024)
LAYER_NAMES = ("conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3",
               "conv4_1", "conv4_2", "conv4_3", "conv5_1", "conv5_2", "conv5_3", "fc6", "fc7")
NUM_PRUNABLE = 14  # conv1_1 .. fc6; fc7 feeds a header and stays whole
POOL_AFTER = {1: "M", 3: "M", 6: "C", 9: "M"}  # after conv k (0-based): pool kind (C: ceil mode)
BN_SOURCE = 23  # base_net[:23] ends with conv4_3's ReLU; the BatchNorm add-on feeds header 0
CONV4_3 = 9
EXTRAS = ((256, 512), (128, 256), (128, 256), (128, 256))
EXTRA_STRIDE_PADDING = ((2, 1), (2, 1), (1, 0), (1, 0))
STAGES = (("conv1", 2), ("conv2", 2), ("conv3", 3), ("conv4", 3), ("conv5", 3), ("fc6", 1))


def build(num_classes: int, plan: ChannelPlan, image_size: int) -> SSD:
    """VGG16-SSD with the widths of ``plan`` (random weights)."""
    layers: List[nn.Module] = []
    in_c = 3
    for k, out in enumerate(plan.base[:13]):
        layers += [nn.Conv2d(in_c, out, 3, padding=1), nn.ReLU(inplace=True)]
        pool = POOL_AFTER.get(k)
        if pool:
            layers.append(nn.MaxPool2d(2, 2, ceil_mode=pool == "C"))
        in_c = out
    fc6, fc7 = plan.base[13], plan.base[14]
    layers += [nn.MaxPool2d(3, 1, 1), nn.Conv2d(in_c, fc6, 3, padding=6, dilation=6), nn.ReLU(inplace=True),
               nn.Conv2d(fc6, fc7, 1), nn.ReLU(inplace=True)]
    base = nn.Sequential(*layers)
    conv4_3 = plan.base[CONV4_3]
    cls, reg = headers([conv4_3, fc7] + [out for _, out in plan.extras], CONFIG, num_classes)
    return SSD(CONFIG, num_classes, base, [BN_SOURCE, len(base)], {BN_SOURCE: nn.BatchNorm2d(conv4_3)},
               extra_blocks(fc7, plan.extras, EXTRA_STRIDE_PADDING), cls, reg, plan, image_size)


def producer_key(layer: int) -> str:
    return f"base_net.{CONV_INDEXES[layer]}"


def activation_key(layer: int) -> str:
    return f"base_net.{CONV_INDEXES[layer] + 1}"  # the ReLU right after the conv


def slice_rules() -> Dict[str, Rule]:
    rules = chain_rules([producer_key(k) for k in range(len(CHANNELS))], NUM_PRUNABLE)
    rules["source_layer_add_ons.0"] = (CONV4_3, None)  # conv4_3's BatchNorm keeps conv4_3's channels
    return {**rules, **header_rules({CONV4_3: 0})}


def layer_of_module(name: str) -> Optional[int]:
    parts = name.split(".")
    if parts[0] != "base_net" or len(parts) < 2 or int(parts[1]) >= CONV_INDEXES[NUM_PRUNABLE]:
        return None
    return max(i for i in range(NUM_PRUNABLE) if CONV_INDEXES[i] <= int(parts[1]))


def module_label(name: str) -> Optional[str]:
    parts = name.split(".")
    if parts[0] == "base_net" and len(parts) == 2 and int(parts[1]) in CONV_INDEXES:
        return LAYER_NAMES[CONV_INDEXES.index(int(parts[1]))]
    if parts[0] == "source_layer_add_ons":
        return "conv4_3_bn"
    return None


SPEC = NetSpec(name="vgg16-ssd", config=CONFIG, channels=CHANNELS, extras=EXTRAS,
               layer_names=LAYER_NAMES[:NUM_PRUNABLE], build=build, producer_key=producer_key,
               activation_key=activation_key, slice_rules=slice_rules, layer_of_module=layer_of_module,
               stages=STAGES, module_label=module_label, default_compress_rate=tuple(PRUNED_RATE),
               unpruned_parts="fc7, BN add-on, extras, headers")
