"""A third detector is one net file plus a registry line: a toy SSD defined and registered here goes through
the normal commands (train, rank, prune, flops, eval) with no change to the library."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from torch import nn

from hrank_ssd.cli import main
from hrank_ssd.data.synthetic import make_synthetic_voc
from hrank_ssd.hrank.pruning import masked_copy
from hrank_ssd.nets import registry
from hrank_ssd.nets.models import build_model, detect_net, load_model, read_sidecar
from hrank_ssd.nets.spec import NetConfig, NetSpec, PriorSpec, chain_rules, header_rules
from hrank_ssd.nets.ssd import SSD, ChannelPlan, headers

# ---------------------------------------------------------------- the whole "net file" of the toy detector

CONFIG = NetConfig(name="toy-ssd", image_size=64, image_mean=(127.0, 127.0, 127.0), image_std=128.0,
                   specs=(PriorSpec(16, 4, 12, 24, (2,)), PriorSpec(8, 8, 24, 48, (2,))))
CONV_INDEXES = (0, 3, 6)  # conv, ReLU, pool, conv, ReLU, pool, conv (stride 2), ReLU
CHANNELS = (8, 16, 16)
NUM_PRUNABLE = 2  # conv0 and conv1; conv2 feeds the last header and stays whole


def build(num_classes: int, plan: ChannelPlan, image_size: int) -> SSD:
    c0, c1, c2 = plan.base
    base = nn.Sequential(nn.Conv2d(3, c0, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(c0, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(c1, c2, 3, stride=2, padding=1), nn.ReLU())
    cls, reg = headers([c1, c2], CONFIG, num_classes)
    return SSD(CONFIG, num_classes, base, [6, 8], {}, nn.ModuleList(), cls, reg, plan, image_size)


def producer_key(layer: int) -> str:
    return f"base_net.{CONV_INDEXES[layer]}"


SPEC = NetSpec(
    name="toy-ssd", config=CONFIG, channels=CHANNELS, extras=(), layer_names=("conv0", "conv1"),
    build=build, producer_key=producer_key, activation_key=lambda i: f"base_net.{CONV_INDEXES[i] + 1}",
    slice_rules=lambda: {**chain_rules([producer_key(k) for k in range(3)], NUM_PRUNABLE), **header_rules({1: 0})},
    layer_of_module=lambda name: (min(int(name.split(".")[1]) // 3, 1)
                                  if name.startswith("base_net.") and int(name.split(".")[1]) < 6 else None),
    stages=(("low", 1), ("mid", 1)))

# ----------------------------------------------------------------


def conv_macs(c_in, c_out, k, size):
    return size * size * c_out * c_in * k * k


def expected_macs(c0, c1, c2, num_classes):
    """By hand: the three backbone convs and the two headers (3x3; 2 + 2 x 1 aspect ratio = 4 boxes per
    location), 64x64 input: maps of 64, 32, 8 after the convs, sources of 16 and 8."""
    boxes = 4
    return (conv_macs(3, c0, 3, 64) + conv_macs(c0, c1, 3, 32) + conv_macs(c1, c2, 3, 8)
            + conv_macs(c1, boxes * num_classes, 3, 16) + conv_macs(c1, boxes * 4, 3, 16)
            + conv_macs(c2, boxes * num_classes, 3, 8) + conv_macs(c2, boxes * 4, 3, 8))


@pytest.fixture
def toy_net(monkeypatch):
    monkeypatch.setitem(registry._NETS, SPEC.name, SPEC)  # registered for this test only
    return SPEC


def test_a_toy_net_goes_through_every_command(toy_net, tmp_path, capsys):
    voc = make_synthetic_voc(tmp_path / "data", num_train=8, num_test=4, image_size=96)
    classes = len((voc / "labels.txt").read_text().split())
    ckpt = tmp_path / "ckpt"
    assert main(["train", "--net", "toy-ssd", "--datasets", str(voc), "--validation_dataset", str(voc),
                 "--checkpoint_folder", str(ckpt), "--num_epochs", "1", "--batch_size", "4", "--num_workers", "0",
                 "--seed", "0", "--device", "cpu", "--validation_epochs", "0", "--no_progress"]) == 0
    base = sorted(ckpt.glob("toy-ssd-Epoch-*.pth"))[-1]
    model = load_model(base)
    assert model.cfg.name == "toy-ssd" and model.plan.base == list(CHANNELS)

    assert main(["rank", "--net", "toy-ssd", "--base_net", str(base), "--dataset", str(voc), "--limit", "1",
                 "--batch_size", "4", "--rank_dir", str(tmp_path / "ranks"), "--device", "cpu"]) == 0
    assert sorted(p.name for p in (tmp_path / "ranks").iterdir()) == ["rank_conv1.npy", "rank_conv2.npy"]

    pruned_path = tmp_path / "pruned.pth"
    assert main(["prune", "--net", "toy-ssd", "--base_net", str(base), "--rank_dir", str(tmp_path / "ranks"),
                 "--compress_rate", "[0.5]*2", "--output", str(pruned_path)]) == 0
    pruned = load_model(pruned_path).eval()
    assert pruned.plan.base == [4, 8, 16]  # int(c * (1 - 0.5)) for the two prunable convs, conv2 whole
    kept = read_sidecar(pruned_path)["kept_indices"]
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(pruned(x), masked_copy(model.eval(), kept)(x)):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)  # float32 sums in another order

    capsys.readouterr()
    assert main(["flops", "--net", "toy-ssd", "--compress_rate", "[0.5]*2", "--num_classes", str(classes),
                 "--csv", str(tmp_path / "flops.csv")]) == 0
    rows = list(csv.DictReader(open(tmp_path / "flops.csv")))
    assert sum(int(r["MACs"]) for r in rows) == expected_macs(4, 8, 16, classes)

    assert main(["eval", "--trained_model", str(pruned_path), "--dataset", str(voc),
                 "--eval_dir", str(tmp_path / "eval"), "--device", "cpu", "--no_progress"]) == 0
    ap = list(csv.DictReader(open(tmp_path / "eval" / "ap.csv")))
    assert len(ap) >= 1 and all(0.0 <= float(r["ap"]) <= 1.0 for r in ap if r["ap"] not in ("", "nan"))


def test_registry_knows_the_toy_only_while_registered(toy_net, tmp_path):
    state = build_model("toy-ssd", 3).state_dict()
    assert detect_net(state) == "toy-ssd"
    assert detect_net(build_model("vgg16-ssd", 3, width=0.05).state_dict()) == "vgg16-ssd"
    del registry._NETS["toy-ssd"]
    with pytest.raises(Exception, match="matches none of vgg16-ssd, mb1-ssd"):
        detect_net(state)
    registry.register(SPEC)
    assert json.loads(json.dumps(registry.net_names())) == ["vgg16-ssd", "mb1-ssd", "toy-ssd"]
