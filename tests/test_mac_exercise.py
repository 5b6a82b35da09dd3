"""Notebook 05's exercise, count_macs(model, image_size): the check passes right counters, names each usual mistake,
never raises and never takes the library's own count; the notebook's solution is the library's table, exactly."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
import torch
from torch import nn

from hrank_ssd.course import checking
from hrank_ssd.course import mac_exercise as mx
from hrank_ssd.measure import flops, published_flops

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "05_flops_table.py"


def counter(factor=1, groups=True, output_size=True, deep=True, bias=False, batchnorm=True, linear=True,
            params=False, remove=True, on_device=True):
    """A hook counter; each argument switched from its default makes one of the usual mistakes."""
    def count_macs(model, image_size):
        total = []

        def hook(m, inputs, out):
            if isinstance(m, nn.Conv2d):
                h, w = (out if output_size else inputs[0]).shape[-2:]
                n = h * w * m.out_channels * m.in_channels // (m.groups if groups else 1) * m.kernel_size[0] ** 2
            elif isinstance(m, nn.Linear):
                n = out.numel() * m.in_features if linear else 0
            else:
                n = out.numel() if batchnorm else 0
            if bias and not isinstance(m, nn.BatchNorm2d) and m.bias is not None:
                n += out.numel()
            total.append(factor * (sum(p.numel() for p in m.parameters()) if params else n))

        layers = model.modules() if deep else [model, *model.children()]
        handles = [m.register_forward_hook(hook) for m in layers if isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm2d))]
        device = next(model.parameters()).device if on_device else "cpu"
        with torch.no_grad():
            model(torch.zeros(1, 3, image_size, image_size, device=device))
        for handle in handles if remove else []:
            handle.remove()
        return sum(total)
    return count_macs


def global_hook_counter(model, image_size):
    """Another spelling: one hook on every module PyTorch runs, layer kinds told apart by their weights' shapes."""
    counts = {}

    def hook(m, inputs, out):
        if isinstance(m, nn.Conv2d):
            counts[m] = out.numel() * m.weight[0].numel()  # one filter's weights: in_channels / groups x kh x kw
        elif isinstance(m, nn.Linear):
            counts[m] = out.numel() * m.weight.shape[1]
        elif isinstance(m, nn.BatchNorm2d):
            counts[m] = out.numel()

    handle = nn.modules.module.register_module_forward_hook(hook)
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, image_size, image_size, device=next(model.parameters()).device))
    finally:
        handle.remove()
    return float(sum(counts.values()))  # an integral float is a count too


def run(fn):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        ok = mx.check_count_macs(fn)
    return ok, out.getvalue()


def notebook_solution():
    """The exercise cell of notebook 05's source, run: its count_macs."""
    text = NOTEBOOK.read_text(encoding="utf-8")
    cell = text.split('# %% tags=["exercise"]\n', 1)[1].split("\n# %%", 1)[0]
    scope = {"torch": torch}
    exec(compile(cell, str(NOTEBOOK), "exec"), scope)
    return scope["count_macs"]


@pytest.mark.parametrize("fn", [counter(), global_hook_counter, notebook_solution()])
def test_right_counters_pass(fn):
    ok, text = run(fn)
    assert ok is True and text == "correct: count_macs agrees with flops.count_exact's total on all 6 cases\n"


@pytest.mark.parametrize("mistake,got,hint", [
    (dict(factor=2), "returned 393984, expected 196992", "FLOPs count them apart"),
    (dict(params=True), "returned 1392, expected 196992", "that is the number of weights"),
    (dict(bias=True), "returned 200448, expected 196992", "adding the bias is not counted"),
    (dict(output_size=False), "(a stride-2 conv and an unpadded one at 16x16) returned 93312, expected 34848",
     "use the height x width of its output"),
    (dict(groups=False), "returned 315200, expected 99200", "in_channels / groups input channels only"),
    (dict(batchnorm=False), "returned 96000, expected 99200", "count BatchNorm2d too"),
    (dict(linear=False), "(a conv and a Linear classifier at 16x16) returned 10584, expected 14504",
     "count nn.Linear too"),
    (dict(deep=False), "(nested blocks (a Sequential in a Sequential) at 8x8) returned 13864, expected 32808",
     "model.modules() visits every module at every depth"),
    (dict(remove=False), "count_macs left its hooks on the model", ".remove() once the forward pass is done"),
    (dict(on_device=False), "(MobileNetV1-SSD (21 classes, 300x300) on the meta device) raised",
     "on the model's device: next(model.parameters()).device"),
])
def test_each_mistake_gets_its_hint(mistake, got, hint):
    ok, text = run(counter(**mistake))
    assert ok is False and text.startswith(checking.NOT_YET), text
    lines = text.splitlines()
    assert got in lines[0] and lines[1].startswith(f"  {checking.HINT}") and hint in lines[1], text


def test_failing_blank_or_borrowed_functions_are_not_yet():
    def blank(model, image_size):
        raise NotImplementedError("exercise: write your code here, then run the check cell below")

    for fn, phrases in ((blank, ["count_macs is still blank"]),
                        (lambda m, s: 1 / 0, ["raised ZeroDivisionError", "put a forward hook on every Conv2d"]),
                        (lambda m, s: None, ["returned None", "end it with `return"]),
                        (lambda m, s: 0, ["returned 0", "no layer was counted"]),
                        (None, ["count_macs is not a function"]),
                        (flops.macs, ["count_macs is the library's macs"]),
                        (lambda m, s: int(flops.count_exact(m, s)["MACs"].sum()), ["calls the library's count_exact"])):
        ok, text = run(fn)
        assert ok is False and text.startswith(checking.NOT_YET), text
        for phrase in phrases:
            assert phrase in text, (phrase, text)


def test_the_notebooks_counter_totals_the_library_table():
    """The convention: Conv2d (with groups), Linear and BatchNorm2d (1 per element) are flops.totals' MACs."""
    count_macs = notebook_solution()
    for _, net, rate in published_flops.DEFAULT_ROWS:
        model = flops.build_for_counting(net, 21, compress_rate=rate)
        assert count_macs(model, 300) == flops.totals(flops.count_exact(model))["MACs"]
        assert not any(m._forward_hooks for m in model.modules())


def test_your_counts_uses_the_students_numbers_or_says_why_not(capsys):
    table = published_flops.flops_table()
    yours = mx.your_counts(notebook_solution(), table)
    assert capsys.readouterr().out == ""
    assert list(yours["MACs"]) == list(table["MACs"]) and set(yours["counted_by"]) == {"count_macs"}
    assert list(yours["MACs_ratio"]) == list(table["MACs_ratio"]) and list(yours["params"]) == list(table["params"])
    for fn, said in ((lambda m, s: 1 / 0, "raised ZeroDivisionError: division by zero"),
                     (counter(factor=2), "gave 62748554240")):
        fallback = mx.your_counts(fn, table)
        line = capsys.readouterr().out
        assert line == (f"on VGG16-SSD your count_macs {said} (the library counts 31374277120); the numbers below are "
                        "the library's (flops.count_exact) until the check above says correct\n")
        assert list(fallback["MACs"]) == list(table["MACs"]) and set(fallback["counted_by"]) == {"flops.count_exact"}
