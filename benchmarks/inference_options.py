"""Inference options for a (pruned) detector, each returning a model the Predictor, ``hrank_ssd.measure.bench``
and ``evaluate_model`` accept (a wrapper keeps the SSD's ``cfg``, ``priors``, ``plan``...: ``bench.Wrapped``):
BatchNorm folding, channels_last, ``torch.compile``, ONNX Runtime, int8 (widths rounded to 8: ``prune_model``).

BN folding: MobileNetV1-SSD's conv+BN pairs fold exactly. VGG16-SSD's conv4_3 BatchNorm add-on sits after the ReLU
on the header branch, so it folds into the two headers that read it; they zero-pad the BN output but BN(0) != 0, so
a plain bias is wrong at the borders. The headers get a *bias map* instead (the header applied to the zero-padded
constant BN shift), exact at the model's input size; ``border_exact=False`` gives the plain bias.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import tempfile
from pathlib import Path
from typing import Iterable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hrank_ssd.errors import HRankError
from hrank_ssd.measure.bench import Wrapped, take_facts


def _bn_affine(bn: nn.BatchNorm2d):
    """Inference BN as ``y = x * scale + shift`` per channel."""
    scale = (bn.weight.detach() if bn.affine else 1) / torch.sqrt(bn.running_var + bn.eps)
    return scale, (bn.bias.detach() if bn.affine else 0) - bn.running_mean * scale


def _like(conv: nn.Conv2d, bias: bool) -> nn.Conv2d:
    return nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                     conv.groups, bias=bias, padding_mode=conv.padding_mode).to(conv.weight.device)


def _bias(conv: nn.Conv2d) -> torch.Tensor:
    return conv.bias.detach() if conv.bias is not None else torch.zeros(conv.out_channels, device=conv.weight.device)


def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """Conv followed by BN -> one conv with bias (exact: BN acts on the conv's output)."""
    scale, shift = _bn_affine(bn)
    fused = _like(conv, bias=True)
    with torch.no_grad():
        fused.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
        fused.bias.copy_(_bias(conv) * scale + shift)
    return fused


class BiasMapConv(nn.Module):
    """``conv(x) + bias_map``: a conv whose bias varies over the (fixed-size) output plane."""

    def __init__(self, conv: nn.Conv2d, bias_map: torch.Tensor):
        super().__init__()
        self.conv = conv
        self.register_buffer("bias_map", bias_map)

    def forward(self, x):
        y = self.conv(x)
        if y.shape[-2:] != self.bias_map.shape[-2:]:
            raise HRankError(f"this folded model was built for {tuple(self.bias_map.shape[-2:])} feature maps, got "
                             f"{tuple(y.shape[-2:])}: fold again at the new --image_size")
        return y + self.bias_map


def fold_bn_into_conv(bn: nn.BatchNorm2d, conv: nn.Conv2d, size, border_exact: bool = True):
    """BN then a zero-padded conv -> a :class:`BiasMapConv` (exact), or with ``border_exact=False`` a plain conv
    whose bias assumes no padding (wrong near the borders)."""
    scale, shift = _bn_affine(bn)
    w = conv.weight.detach()
    folded = _like(conv, bias=not border_exact)
    with torch.no_grad():
        folded.weight.copy_(w * scale.reshape(1, -1, 1, 1))
        if not border_exact:
            folded.bias.copy_(_bias(conv) + (w * shift.reshape(1, -1, 1, 1)).sum((1, 2, 3)))
            return folded
        plane = shift.reshape(1, -1, 1, 1).expand(1, -1, *size).contiguous()
        bias_map = F.conv2d(plane, w, _bias(conv), conv.stride, conv.padding, conv.dilation, conv.groups)[0]
    return BiasMapConv(folded, bias_map)


def fold_batchnorm(model, border_exact: bool = True):
    """A copy of ``model`` with its BatchNorms folded away: a BatchNorm right after a conv in a Sequential into that
    conv, a BatchNorm add-on on a source map into the headers that read it. The original is untouched."""
    model = copy.deepcopy(model).eval()
    for block in model.modules():
        if isinstance(block, nn.Sequential):
            for i in range(len(block) - 1):
                if isinstance(block[i], nn.Conv2d) and isinstance(block[i + 1], nn.BatchNorm2d):
                    block[i], block[i + 1] = fold_conv_bn(block[i], block[i + 1]), nn.Identity()
    sizes = model.feature_map_sizes(model.image_size)
    for header, k in model.header_add_ons.items():
        bn = model.source_layer_add_ons[k]
        if not isinstance(bn, nn.BatchNorm2d):
            raise HRankError(f"fold_batchnorm folds BatchNorm add-ons only; {model.cfg.name}'s add-on {k} is a "
                             f"{type(bn).__name__}")
        for headers in (model.classification_headers, model.regression_headers):
            headers[header] = fold_bn_into_conv(bn, headers[header], (sizes[header],) * 2, border_exact)
        model.source_layer_add_ons[k] = nn.Identity()
    return model


class ChannelsLast(Wrapped):
    """The model in channels_last (NHWC) memory format; inputs are converted on the way in."""

    def __init__(self, model):
        super().__init__(copy.deepcopy(model).eval().to(memory_format=torch.channels_last))

    def forward(self, x):
        return self.model(x.contiguous(memory_format=torch.channels_last))


def first_line(e: Exception, n: int) -> str:
    """``Type: the first line of the message``, at most ``n`` characters of it."""
    return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:n]}"


def compile_model(model, example: Optional[torch.Tensor] = None, **kwargs):
    """``torch.compile(model)``, run once on ``example``; where it cannot run here, a one-line ``HRankError``."""
    if not hasattr(torch, "compile"):
        raise HRankError(f"torch {torch.__version__} has no torch.compile")
    example = torch.randn(1, 3, model.image_size, model.image_size) if example is None else example
    try:
        compiled = torch.compile(copy.deepcopy(model).eval(), **kwargs)
        with torch.inference_mode():
            compiled(example)
    except Exception as e:  # no C compiler, unsupported platform, inductor bugs...
        raise HRankError(f"torch.compile failed here: {first_line(e, 200)}") from e
    return Wrapped(compiled)


def export_onnx(model, path, batch_size: int = 1, image_size: Optional[int] = None, opset: int = 18) -> Path:
    """``model`` (float32, CPU copy) as ONNX: input ``images``, outputs ``confidences`` and ``locations``, the batch
    dimension dynamic. Uses torch's dynamo exporter, else the TorchScript one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    work = copy.deepcopy(model).float().cpu().eval()
    x = torch.randn(batch_size, 3, image_size or model.image_size, image_size or model.image_size)
    kw = dict(input_names=["images"], output_names=["confidences", "locations"], opset_version=opset)
    errors = []
    for dynamo in (True, False):
        extra = ({"dynamic_shapes": ({0: torch.export.Dim("batch")},)} if dynamo else
                 {"dynamic_axes": {"images": {0: "batch"}, "confidences": {0: "batch"}, "locations": {0: "batch"}}})
        try:
            with contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
                torch.onnx.export(work, (x,), str(path), dynamo=dynamo, **kw, **extra)
            return path
        except Exception as e:  # fall back to the other exporter
            errors.append(first_line(e, 160))
    raise HRankError(f"ONNX export failed ({'; '.join(errors)}); check the onnx/onnxscript install")


class OnnxModel:
    """An onnxruntime CPU session behaving like the SSD ``like`` it was exported from: ``model(x) -> (confidences,
    locations)``; ``parameters``/``buffers`` are that SSD's, and ``to`` accepts only the CPU."""

    training = False

    def __init__(self, path, like, threads: Optional[int] = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise HRankError("onnxruntime is not installed: pip install onnxruntime") from None
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = int(threads or torch.get_num_threads()), 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.model = take_facts(self, like)  # the SSD, for parameter/MAC counts
        self.parameters, self.buffers = self.model.parameters, self.model.buffers
        self.priors = self.model.priors.detach().cpu()
        self.input_name = self.session.get_inputs()[0].name

    def to(self, device=None, *args, **kwargs):
        if device is not None and not isinstance(device, torch.dtype) and torch.device(device).type != "cpu":
            raise HRankError("an ONNX model runs on the CPU with onnxruntime here: use --device cpu")
        return self

    def eval(self):
        return self

    def modules(self):
        return iter([self])

    def __call__(self, x: torch.Tensor):
        conf, loc = self.session.run(None, {self.input_name: x.detach().cpu().float().contiguous().numpy()})
        return torch.from_numpy(conf), torch.from_numpy(loc)


class _Calibration:
    """onnxruntime's CalibrationDataReader over (B, 3, H, W) batches."""

    def __init__(self, batches: Iterable[torch.Tensor], input_name: str):
        self.items = iter([{input_name: b.detach().cpu().float().numpy()} for b in batches])

    def get_next(self):
        return next(self.items, None)


def quantize_int8(model, calibration: Iterable[torch.Tensor], path, threads: Optional[int] = None) -> OnnxModel:
    """Post-training static int8 with onnxruntime (torch's ``torch.ao.quantization`` flows are deprecated): export,
    calibrate activation ranges (MinMax) on ``calibration`` batches, write QDQ int8 (weights per channel) to
    ``path``."""
    try:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError:
        raise HRankError("int8 needs onnxruntime's quantization tools: pip install onnxruntime") from None
    path, batches = Path(path), list(calibration)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not batches:
        raise HRankError("int8 calibration needs at least one batch of images")
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:  # fp32 export and its external data
        fp32, pre = Path(tmp) / "fp32.onnx", Path(tmp) / "pre.onnx"
        export_onnx(model, fp32)
        try:
            quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        except Exception:  # pre-processing is an optimisation only
            pre = fp32
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # onnxruntime's advice messages go to the root logger
        try:
            quantize_static(str(pre), str(path), _Calibration(batches, "images"), quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                            calibrate_method=CalibrationMethod.MinMax)
        finally:
            root.setLevel(level)
    return OnnxModel(path, model, threads)


def output_agreement(a, b, x: torch.Tensor) -> dict:
    """Max abs difference and correlation of two models' confidences and locations on ``x``, and the share of
    priors whose arg-max class agrees."""
    with torch.inference_mode():
        ca, la, cb, lb = (t.float().cpu() for t in (*a(x), *b(x)))
    corr = lambda u, v: float(np.corrcoef(u.flatten().numpy(), v.flatten().numpy())[0, 1])  # noqa: E731
    return {"conf_max_abs_diff": float((ca - cb).abs().max()), "loc_max_abs_diff": float((la - lb).abs().max()),
            "conf_corr": corr(ca, cb), "loc_corr": corr(la, lb),
            "argmax_agreement": float((ca.argmax(-1) == cb.argmax(-1)).float().mean())}
