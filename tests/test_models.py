"""Model layout (pytorch-ssd keys and shapes), priors, box coding, checkpoint loading and its errors."""

import math

import pytest
import torch
from torchvision.ops import box_convert

from hrank_ssd.errors import HRankError
from hrank_ssd.nets.compress import PRUNED_RATE
from hrank_ssd.nets.mb1_ssd import CONFIG as MB1_SSD
from hrank_ssd.nets.models import build_model, count_parameters, load_model, save_model
from hrank_ssd.nets.priors import decode, encode, generate_priors
from hrank_ssd.nets.vgg16_ssd import CONFIG as VGG16_SSD


def vgg_reference_shapes(num_classes=21):
    """pytorch-ssd's create_vgg_ssd(21) parameter shapes, written out from its architecture."""
    shapes = {}
    convs = [(0, 3, 64), (2, 64, 64), (5, 64, 128), (7, 128, 128), (10, 128, 256), (12, 256, 256),
             (14, 256, 256), (17, 256, 512), (19, 512, 512), (21, 512, 512), (24, 512, 512), (26, 512, 512),
             (28, 512, 512)]
    for i, cin, cout in convs:
        shapes[f"base_net.{i}.weight"] = (cout, cin, 3, 3)
        shapes[f"base_net.{i}.bias"] = (cout,)
    shapes["base_net.31.weight"], shapes["base_net.31.bias"] = (1024, 512, 3, 3), (1024,)
    shapes["base_net.33.weight"], shapes["base_net.33.bias"] = (1024, 1024, 1, 1), (1024,)
    for k in ("weight", "bias", "running_mean", "running_var"):
        shapes[f"source_layer_add_ons.0.{k}"] = (512,)
    shapes["source_layer_add_ons.0.num_batches_tracked"] = ()
    extras = [(1024, 256, 512, 3), (512, 128, 256, 3), (256, 128, 256, 3), (256, 128, 256, 3)]
    for k, (cin, mid, out, ks) in enumerate(extras):
        shapes[f"extras.{k}.0.weight"], shapes[f"extras.{k}.0.bias"] = (mid, cin, 1, 1), (mid,)
        shapes[f"extras.{k}.2.weight"], shapes[f"extras.{k}.2.bias"] = (out, mid, ks, ks), (out,)
    for h, (cin, boxes) in enumerate([(512, 4), (1024, 6), (512, 6), (256, 6), (256, 4), (256, 4)]):
        shapes[f"classification_headers.{h}.weight"] = (boxes * num_classes, cin, 3, 3)
        shapes[f"classification_headers.{h}.bias"] = (boxes * num_classes,)
        shapes[f"regression_headers.{h}.weight"] = (boxes * 4, cin, 3, 3)
        shapes[f"regression_headers.{h}.bias"] = (boxes * 4,)
    return shapes


def test_vgg16_ssd_matches_pytorch_ssd_layout():
    model = build_model("vgg16-ssd", 21)
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == vgg_reference_shapes()
    dilated = model.base_net[31]
    assert dilated.dilation == (6, 6) and dilated.padding == (6, 6)
    assert model.base_net[16].ceil_mode is True
    assert count_parameters(model) == 26285486 + 512  # 26,285,998 incl. the BatchNorm add-on


def test_mb1_ssd_layout():
    model = build_model("mb1-ssd", 21)
    sd = model.state_dict()
    assert tuple(sd["base_net.0.0.weight"].shape) == (32, 3, 3, 3)
    assert tuple(sd["base_net.1.0.weight"].shape) == (32, 1, 3, 3)  # depthwise
    assert tuple(sd["base_net.1.3.weight"].shape) == (64, 32, 1, 1)  # pointwise
    assert tuple(sd["base_net.13.3.weight"].shape) == (1024, 1024, 1, 1)
    assert tuple(sd["classification_headers.0.weight"].shape) == (6 * 21, 512, 3, 3)
    assert tuple(sd["classification_headers.1.weight"].shape) == (6 * 21, 1024, 3, 3)
    assert tuple(sd["extras.3.2.weight"].shape) == (256, 128, 3, 3)
    assert "base_net.0.0.bias" not in sd and not any(k.startswith("source_layer_add_ons") for k in sd)


@pytest.mark.parametrize("net,count", [("vgg16-ssd", 8732), ("mb1-ssd", 3000)])
def test_prior_counts_and_forward_shapes(net, count):
    model = build_model(net, 21).eval()
    assert model.priors.shape == (count, 4)
    with torch.no_grad():
        conf, loc = model(torch.zeros(1, 3, 300, 300))
    assert conf.shape == (1, count, 21) and loc.shape == (1, count, 4)


def test_priors_equal_reference_generation():
    # First VGG prior: center of cell (0,0) of the 38x38 map with stride 8 -> 0.5 * 8 / 300.
    p = generate_priors(VGG16_SSD)
    assert torch.allclose(p[0], torch.tensor([4 / 300, 4 / 300, 30 / 300, 30 / 300]))
    assert torch.allclose(p[1, 2], torch.tensor(math.sqrt(30 * 60) / 300))
    assert torch.allclose(p[2, 2:], torch.tensor([30 / 300 * math.sqrt(2), 30 / 300 / math.sqrt(2)]))
    assert generate_priors(MB1_SSD).shape == (3000, 4)


def test_small_models_get_priors_from_real_feature_maps():
    tiny = build_model("vgg16-ssd", 6, width=0.125, image_size=320).eval()
    sizes = tiny.feature_map_sizes(320)
    assert sizes == [40, 20, 10, 5, 3, 1]
    with torch.no_grad():
        conf, _ = tiny(torch.zeros(1, 3, 320, 320))
    assert conf.shape[1] == tiny.priors.shape[0] == 40 * 40 * 4 + 400 * 6 + 100 * 6 + 25 * 6 + 9 * 4 + 4
    with pytest.raises(HRankError, match="too small"):
        build_model("vgg16-ssd", 6, image_size=200)


def test_box_coding_round_trip():
    priors = generate_priors(VGG16_SSD)
    torch.manual_seed(0)
    boxes = torch.rand(8732, 2) * 0.5
    corner = torch.cat([boxes, boxes + 0.05 + torch.rand(8732, 2) * 0.4], 1)
    locs = encode(box_convert(corner, "xyxy", "cxcywh"), priors, 0.1, 0.2)
    back = box_convert(decode(locs, priors, 0.1, 0.2), "cxcywh", "xyxy")
    assert torch.allclose(back, corner, atol=1e-5)


def test_save_and_load_round_trip(tmp_path):
    model = build_model("vgg16-ssd", 6, width=0.125, compress_rate=[0.3] * 14)
    path = tmp_path / "m.pth"
    save_model(model, path)
    loaded = load_model(path)  # widths inferred from shapes, no compress rate given
    assert loaded.plan == model.plan and loaded.num_classes == 6
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])


def test_load_model_errors(tmp_path):
    path = tmp_path / "vgg.pth"
    save_model(build_model("vgg16-ssd", 6, width=0.125), path)
    with pytest.raises(HRankError, match="is a vgg16-ssd checkpoint, not mb1-ssd"):
        load_model(path, net="mb1-ssd")
    with pytest.raises(HRankError, match="predicts 6 classes"):
        load_model(path, num_classes=21)
    with pytest.raises(HRankError, match="not found"):
        load_model(tmp_path / "missing.pth")
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(HRankError, match="corrupt"):
        load_model(corrupt)


def test_compress_rate_mismatch_names_the_layer(tmp_path):
    path = tmp_path / "pruned.pth"
    torch.save(build_model("vgg16-ssd", 21, compress_rate=PRUNED_RATE).state_dict(), path)
    assert load_model(path, compress_rate=PRUNED_RATE).plan.prunable[0] == 57
    with pytest.raises(HRankError, match=r"layer 8 \(conv4_1\) should have 358 filters but has 256"):
        load_model(path, compress_rate=[0.1] * 7 + [0.3] * 9)


def test_thop_buffers_and_ddp_prefix_are_ignored_on_load(tmp_path):
    model = build_model("vgg16-ssd", 6, width=0.125)
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    state["module.base_net.0.total_ops"] = torch.zeros(1)
    path = tmp_path / "ddp.pth"
    torch.save(state, path)
    assert load_model(path).num_classes == 6


@pytest.mark.parametrize("net, width", [("vgg16-ssd", 0.125), ("mb1-ssd", 0.25)])
def test_init_from_scratch_gives_unit_activations_and_background_prior(net, width):
    """LSUV's definition: every backbone/extra conv outputs unit std on the images, in the full forward."""
    from hrank_ssd.nets.models import init_from_scratch

    torch.manual_seed(0)
    model = build_model(net, 6, width=width)
    images = torch.randn(2, 3, 300, 300) * 60  # mean-subtracted pixels, as VGG sees them
    init_from_scratch(model, images)
    heads = {id(h) for h in list(model.classification_headers) + list(model.regression_headers)}
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and id(m) not in heads]
    seen = []
    hooks = [c.register_forward_hook(lambda m, i, o: seen.append(float(o.std()))) for c in convs]
    with torch.no_grad():
        conf, _ = model.eval()(images)
    for h in hooks:
        h.remove()
    assert len(seen) == len(convs) > 15
    # the one-pass rescale and this full forward differ only by float32 rounding, ~1e-6 per layer over <= 23
    # layers (~2e-5): 1e-4 bounds that on any CPU, while a wrong scale is off by far more
    assert seen == pytest.approx([1.0] * len(convs), rel=1e-4)
    background = torch.softmax(conf, 2)[..., 0]
    assert float(background.mean()) == pytest.approx(0.99, abs=0.01)


def test_old_checkpoints_without_num_batches_tracked_load(tmp_path):
    # pytorch-ssd's published weights predate BatchNorm's num_batches_tracked buffer
    state = build_model("vgg16-ssd", 21, width=0.125).state_dict()
    state.pop("source_layer_add_ons.0.num_batches_tracked")
    torch.save(state, tmp_path / "old.pth")
    assert load_model(tmp_path / "old.pth", net="vgg16-ssd", num_classes=21).num_classes == 21
