"""Inference options (``benchmarks/inference_options.py``) keep the outputs: BN folding, channels_last, ONNX,
round_to widths, int8."""

from __future__ import annotations

import pytest
import torch
from conftest import load_benchmark

from hrank_ssd.errors import HRankError
from hrank_ssd.hrank.pruning import prune_model
from hrank_ssd.nets.compress import PRUNED_RATE
from hrank_ssd.nets.models import build_model
from hrank_ssd.nets.predictor import Predictor

options = load_benchmark("inference_options")


def _randomise_bn(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) - 0.5)
    return model.eval()


def _close(a, b, x, tol=1e-4):
    with torch.no_grad():
        (ca, la), (cb, lb) = a(x), b(x)
    assert ca.shape == cb.shape and la.shape == lb.shape
    return float((ca - cb).abs().max()), float((la - lb).abs().max())


@pytest.fixture(scope="module")
def x():
    return torch.randn(2, 3, 300, 300, generator=torch.Generator().manual_seed(0))


def test_fold_bn_mb1_exact(x):
    torch.manual_seed(0)
    m = _randomise_bn(build_model("mb1-ssd", 4, width=0.1))
    f = options.fold_batchnorm(m)
    assert not any(isinstance(mod, torch.nn.BatchNorm2d) for mod in f.modules())
    assert any(isinstance(mod, torch.nn.BatchNorm2d) for mod in m.modules())  # original untouched
    assert max(_close(m, f, x)) < 1e-4


def test_fold_bn_vgg_exact_with_bias_map_approximate_without(x):
    torch.manual_seed(0)
    m = _randomise_bn(build_model("vgg16-ssd", 4, width=0.1))
    exact = options.fold_batchnorm(m)
    assert max(_close(m, exact, x)) < 1e-4
    approx = options.fold_batchnorm(m, border_exact=False)
    assert max(_close(m, approx, x)) > 1e-3  # borders see padded zeros, not BN's shift
    # ... but it is exact away from the borders: compare header 0's interior
    with torch.no_grad():
        feat = m.sources(x[:1])[0]
        ref = m.classification_headers[0](feat)
        got = approx.classification_headers[0](approx.sources(x[:1])[0])
    assert float((ref - got)[..., 1:-1, 1:-1].abs().max()) < 1e-4


def test_channels_last_same_outputs(x):
    torch.manual_seed(0)
    m = build_model("vgg16-ssd", 4, width=0.1).eval()
    cl = options.ChannelsLast(m)
    assert max(_close(m, cl, x)) < 1e-4
    assert cl.model.base_net[0].weight.is_contiguous(memory_format=torch.channels_last)
    boxes, labels, scores = Predictor(cl).predict(torch.randint(0, 255, (120, 160, 3), dtype=torch.uint8).numpy())
    assert boxes.shape[1] == 4


def test_round_to_8_widths():
    torch.manual_seed(0)
    m = build_model("vgg16-ssd", 4, width=0.25)
    pruned, kept = prune_model(m, PRUNED_RATE, "l1", round_to=8)
    assert all(c % 8 == 0 for c in pruned.plan.prunable)
    plain, _ = prune_model(m, PRUNED_RATE, "l1")
    assert any(c % 8 for c in plain.plan.prunable)
    assert all(a >= b for a, b in zip(pruned.plan.prunable, plain.plan.prunable))


def test_onnx_matches_torch(tmp_path, x):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    torch.manual_seed(0)
    m = build_model("mb1-ssd", 4, width=0.1).eval()
    onnx = options.OnnxModel(options.export_onnx(m, tmp_path / "m.onnx"), m, threads=1)
    assert max(_close(m, onnx, x)) < 1e-4  # batch 2 through a batch-1 export: dynamic batch works
    dets = Predictor(onnx).predict(torch.randint(0, 255, (120, 160, 3), dtype=torch.uint8).numpy())
    assert dets[0].shape[1] == 4
    with pytest.raises(Exception, match="CPU"):
        onnx.to("cuda")


def test_int8_runs_and_correlates(tmp_path, x):
    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    m = build_model("vgg16-ssd", 4, width=0.1, compress_rate=PRUNED_RATE).eval()
    q = options.quantize_int8(m, [x[:1], x[1:]], tmp_path / "q.onnx", threads=1)
    agree = options.output_agreement(m, q, x)
    assert agree["conf_corr"] > 0.9 and agree["loc_corr"] > 0.9
    assert agree["conf_max_abs_diff"] > 0  # quantised: close, not exact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q.onnx"]


def test_compile_matches_eager_and_a_failure_is_one_line():
    m = build_model("mb1-ssd", 3, width=0.05).eval()
    x = torch.randn(2, 3, 300, 300, generator=torch.Generator().manual_seed(0))
    # the eager backend needs no C compiler: it must work wherever torch.compile exists
    compiled = options.compile_model(m, example=x[:1], backend="eager")
    assert compiled.cfg == m.cfg and torch.equal(compiled.priors, m.priors)
    with torch.inference_mode():
        for got, want in zip(compiled(x), m(x)):
            # the same aten ops in the same order; 1e-5 only absorbs a kernel choosing another summation order
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    with pytest.raises(HRankError, match=r"^torch\.compile failed here: [^\n]*$"):
        options.compile_model(m, example=x[:1], backend="no_such_backend")
