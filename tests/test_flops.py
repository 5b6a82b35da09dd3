"""Parameter / MAC counting: the analytic count, thop, and the original project's printed table.

Counting runs on meta-device copies (shapes only), so even VGG16-SSD at 300x300 counts in milliseconds.
"""

from __future__ import annotations

import io

import pandas as pd
import pytest
import torch
from torch import nn

from hrank_ssd.cli import main
from hrank_ssd.measure import flops, published_flops
from hrank_ssd.nets.compress import PRUNED_RATE_TEXT
from hrank_ssd.nets.models import THOP_KEYS, build_model

PRUNED = published_flops.PRUNED_RATE
NETS = [("vgg16-ssd", None), ("vgg16-ssd", PRUNED), ("mb1-ssd", None)]


def _meta(net, rate=None, num_classes=21):
    return flops.build_for_counting(net, num_classes, compress_rate=rate)


def test_conv_macs_formula():
    assert flops.conv_macs(3, 57, 3, 300, 300) == 57 * 3 * 9 * 300 * 300 == 138510000
    assert flops.conv_macs(32, 32, (3, 3), 10, 10, groups=32) == 10 * 10 * 32 * 1 * 9
    assert flops.conv_macs(64, 128, (1, 3), 7, 5) == 7 * 5 * 128 * 64 * 3


@pytest.mark.parametrize("conv", [
    nn.Conv2d(3, 8, 3, padding=1),
    nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False),
    nn.Conv2d(16, 16, 3, padding=2, dilation=2, groups=16),
    nn.Conv2d(16, 4, 1),
])
def test_single_conv_exact_matches_formula_and_thop(conv):
    size = 20
    df = flops.count_exact(conv, image_size=size)
    assert len(df) == 1
    row = df.iloc[0]
    y = conv(torch.zeros(1, conv.in_channels, size, size))
    oh, ow = y.shape[-2:]
    assert (row.out_h, row.out_w) == (oh, ow)
    assert row.MACs == flops.conv_macs(conv.in_channels, conv.out_channels, conv.kernel_size, oh, ow, conv.groups)
    assert row.params == sum(p.numel() for p in conv.parameters())
    thop = flops.compare_with_thop(conv, image_size=size).attrs
    assert (thop["thop_total"], thop["thop_params"]) == (row.MACs, row.params)


def test_batchnorm_and_linear_rules():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 8 * 8, 10))
    df = flops.count_exact(model, image_size=10)
    bn, lin = df.iloc[1], df.iloc[2]
    assert bn.MACs == 4 * 8 * 8 and bn.params == 8
    assert lin.MACs == 256 * 10 and lin.params == 256 * 10 + 10


@pytest.mark.parametrize("net,rate", NETS)
def test_thop_and_analytic_agree(net, rate):
    """Conv rows (all MACs but BN) agree exactly; thop counts 4 ops per affine-BN element where we count 1 MAC,
    so the totals differ by exactly 3 x (BN elements), nothing else. Params agree exactly."""
    model = _meta(net, rate)
    table = flops.compare_with_thop(model)
    convs = table[table["type"] == "Conv2d"]
    assert (convs["MACs"] == convs["thop_ops"]).all()
    a = flops.thop_agreement(table)
    assert a["conv_linear_equal"] and a["thop_other_ops"] == 0
    assert a["thop_bn_ops"] == 4 * a["bn_elements"]  # ultralytics-thop 2.x rule: normalise (2) x affine (2)
    assert a["thop_total"] == a["analytic_MACs"] + 3 * a["bn_elements"]
    assert a["thop_params"] == a["analytic_params"] == sum(p.numel() for p in model.parameters())


def test_exact_totals_cover_the_whole_detector():
    model = _meta("vgg16-ssd")
    df = flops.count_exact(model)
    t = flops.totals(df)
    assert t["params"] == sum(p.numel() for p in model.parameters())
    assert set(df["part"]) == {"backbone", "bn_add_on", "extras", "cls_head", "reg_head"}
    assert (df["type"] == "Conv2d").sum() == 15 + 8 + 12
    fc6 = df[df["label"] == "fc6"].iloc[0]
    assert (fc6.out_h, fc6.out_w, fc6.dilation) == (19, 19, 6)
    assert fc6.MACs == flops.conv_macs(512, 1024, 3, 19, 19)
    # the meta-device count equals a real forward pass's shapes on a CPU model
    real = flops.count_exact(build_model("mb1-ssd", 21, width=0.25), image_size=300)
    meta = flops.count_exact(build_model("mb1-ssd", 21, width=0.25).to("meta"), image_size=300)
    assert real[["name", "out_h", "out_w", "params", "MACs"]].equals(meta[["name", "out_h", "out_w", "params", "MACs"]])


def _thop_keys(model):
    return [k for k in model.state_dict() if k.rsplit(".", 1)[-1] in THOP_KEYS]


def test_no_thop_buffers_left_and_model_untouched():
    model = build_model("mb1-ssd", 21, width=0.25)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flops.compare_with_thop(model)
    flops.count_exact(model)
    assert _thop_keys(model) == []
    assert model.training
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


# ------------------------------------------------------------------ the original project's published digits

def test_published_vgg16_unpruned():
    res = published_flops.published_count("vgg16-ssd")
    assert f"{res.params:.2f}" == "19434304.00"
    assert f"{res.flops:.2f}" == "31784832000.00"
    text = res.text().splitlines()
    assert text[1] == "0.0 [64, 3, 3, 3] params: 1792.0  flops: 155520000.0"
    assert "0.0 [1024, 512, 3, 3] params: 4719616.0  flops: 3968335872.0" in text
    assert text.count("Conv2dNo cp rate") == 21
    assert text[11:13] == ["Conv2dNo cp rate"] * 2  # the two conv4_3 heads, as pytorch-ssd runs them


def test_published_vgg16_pruned():
    res = published_flops.published_count("vgg16-ssd", PRUNED)
    assert f"{res.params:.2f}" == "3591598.00"
    assert f"{res.flops:.2f}" == "14224900401.00"
    lines = res.text().splitlines()
    assert lines[1] == "0.1 [57, 3, 3, 3] params: 1456.0  flops: 138510000.0"
    assert lines[-2:] == ["Params: 3591598.00", "Flops: 14224900401.00"]
    assert "0.5 [512, 256, 3, 3] params: 590080.0  flops: 992083968.0" in lines


def test_published_mobilenet():
    res = published_flops.published_count("mb1-ssd")
    assert f"{res.params:.2f}" == "4231976.00"
    assert f"{res.flops:.2f}" == "755703808.00"
    assert res.text() == "Params: 4231976.00\nFlops: 755703808.00"


@pytest.mark.parametrize("net,rate", NETS)
def test_print_published_table_explains_with_computed_numbers(net, rate):
    buf = io.StringIO()
    res = published_flops.print_published_table(net, rate, file=buf)
    out = buf.getvalue()
    assert out.startswith(res.text())
    assert "1. " in out and "reproduced to the digit" in out
    exact = flops.totals(flops.count_exact(_meta(net, rate)))
    assert str(exact["MACs"]) in out  # the exact whole-detector figure is shown beside the published one


def test_flops_table():
    df = published_flops.flops_table()
    assert list(df["model"]) == ["VGG16-SSD", "VGG16-SSD pruned", "MobileNetV1-SSD"]
    assert list(df["published_params"]) == [19434304.0, 3591598.0, 4231976.0]
    assert df["params_ratio"].iloc[0] == 1.0 and df["MACs_ratio"].iloc[1] < 1.0
    assert df["params"].iloc[0] == sum(p.numel() for p in _meta("vgg16-ssd").parameters())


def test_comparison_puts_exact_counts_beside_the_published_and_says_why():
    table = published_flops.flops_table()
    comp = published_flops.comparison(table)
    assert list(comp["model"]) == list(table["model"]) and list(comp["MACs"]) == list(table["MACs"])
    assert list(comp["published_params"]) == [19434304, 3591598, 4231976]
    assert list(comp["published_flops"]) == [31784832000, 14224900401, 755703808]
    assert list(comp["reproduced"]) == [True, True, True]
    assert list(comp["MACs_per_published"]) == list(table["MACs"] / comp["published_flops"])
    assert comp["why"][0] == ("only the 14 convs with a compress rate (6% of the MACs left out: fc7, BatchNorm, "
                              "extras, heads); fc6 as 29x29, not 19x19 (dilation ignored)")
    assert comp["why"][1] == comp["why"][0].replace("6%", "7%") + "; pruned filters removed twice"
    assert comp["why"][2] == ("the ImageNet classifier (1000 classes, no SSD extras or heads) at 256x256, thop 0.0.x "
                              "rules (BatchNorm: 2 ops per element)")
    # anyone's count in the MACs column; a rate the original never published: no figure, nothing reproduced
    other = published_flops.flops_table([("VGG16-SSD", "vgg16-ssd", None), ("half", "vgg16-ssd", [0.5] * 14)])
    comp = published_flops.comparison(other.assign(MACs=[2, 1]))
    assert list(comp["MACs"]) == [2, 1] and comp["reproduced"][0] is True
    assert comp["reproduced"][1] is None and pd.isna(comp["published_flops"][1])


# ------------------------------------------------------------------ CLI

@pytest.mark.parametrize("argv", [
    ["flops"],
    ["flops", "--net", "vgg16-ssd", "--compress_rate", PRUNED_RATE_TEXT, "--style", "published"],
    ["flops", "--net", "mb1-ssd", "--style", "exact"],
    ["flops", "--net", "mb1-ssd", "--style", "published"],
])
def test_cli_styles(argv, capsys, tmp_path):
    out_csv = tmp_path / "t.csv"
    assert main(argv + ["--csv", str(out_csv)]) == 0
    out = capsys.readouterr().out
    assert "Params" in out and out_csv.is_file()
    if "published" in argv:
        assert "Why these differ" in out
    else:
        assert "MACs" in out and "agree exactly" in out


def test_cli_bad_compress_rate(capsys):
    assert main(["flops", "--compress_rate", "[0.1]*3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:")


# The original project's published pruned table (README "FLOPs & Paras"), quoted for comparison.
PUBLISHED_PRUNED_LINES = """\
0.1 [57, 3, 3, 3] params: 1456.0  flops: 138510000.0
0.1 [57, 57, 3, 3] params: 26728.0  flops: 2631690000.0
0.1 [115, 57, 3, 3] params: 53456.0  flops: 1327387500.0
0.1 [115, 115, 3, 3] params: 107744.0  flops: 2678062500.0
0.1 [230, 115, 3, 3] params: 214452.0  flops: 1339031250.0
0.1 [230, 230, 3, 3] params: 428697.0  flops: 2678062500.0
0.1 [230, 230, 3, 3] params: 428697.0  flops: 2678062500.0
0.5 [256, 230, 3, 3] params: 265088.0  flops: 765204480.0
0.5 [256, 256, 3, 3] params: 295040.0  flops: 851705856.0
0.5 [256, 256, 3, 3] params: 295040.0  flops: 851705856.0
Conv2dNo cp rate
Conv2dNo cp rate
0.5 [256, 256, 3, 3] params: 295040.0  flops: 212926464.0
0.5 [256, 256, 3, 3] params: 295040.0  flops: 212926464.0
0.5 [256, 256, 3, 3] params: 295040.0  flops: 212926464.0
0.5 [512, 256, 3, 3] params: 590080.0  flops: 992083968.0
""" + "Conv2dNo cp rate\n" * 19 + "Params: 3591598.00\nFlops: 14224900401.00"


def test_published_vgg16_pruned_whole_table():
    # the first line ("compress rate:  [...]") lists the 14 rates used, the original listed the 16 it was given
    assert "\n".join(published_flops.published_count("vgg16-ssd", PRUNED).text().splitlines()[1:]) == PUBLISHED_PRUNED_LINES
