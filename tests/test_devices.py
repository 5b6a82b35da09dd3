"""The course on a GPU, checked on a CPU-only machine: no library function moves the caller's model, and every
tensor it builds lives on the device of the tensors it meets.

``support.sim_device`` gives torch a second device whose tensors compute on the CPU but refuse to meet CPU
tensors, as a GPU's do (``docs/testing.md``, "Device checks without a GPU"). The "cuda" kind takes the library's GPU
branches (inference); the "meta" kind also trains.
"""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch
from support.fake_clock import install_conv_clock
from support.sim_device import DeviceMix, SimTensor, devices_of, simulated_device

from hrank_ssd.course.notebooks import run_steps
from hrank_ssd.course.results import STEPS
from hrank_ssd.course.steps import Course
from hrank_ssd.data.voc import TestTransform, VOCDataset
from hrank_ssd.hrank.pruning import CRITERIA, masked_copy, prune_model
from hrank_ssd.hrank.ranks import compute_ranks, image_batches, save_ranks
from hrank_ssd.hrank.stability import rank_sets
from hrank_ssd.measure.bench import benchmark_models
from hrank_ssd.measure.evaluation import evaluate_model, mean_ap
from hrank_ssd.measure.fine_grained import compare_fine_grained
from hrank_ssd.measure.sensitivity import layer_sensitivity, quick_map
from hrank_ssd.nets.models import build_model
from hrank_ssd.nets.predictor import Predictor
from hrank_ssd.train.losses import validation_loss


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A random width-0.125 VGG16-SSD (6 classes), random ranks, 3 synthetic test images."""
    from hrank_ssd.data.synthetic import make_synthetic_voc

    tmp = tmp_path_factory.mktemp("devices")
    root = make_synthetic_voc(tmp / "voc", num_train=4, num_test=3, image_size=300, seed=0)
    torch.manual_seed(0)
    model = build_model("vgg16-ssd", 6, width=0.125).eval()
    rng = np.random.default_rng(0)
    save_ranks([rng.uniform(0, 20, c) for c in model.plan.prunable], tmp / "ranks")
    return model, VOCDataset(root, split="test", is_test=True), tmp / "ranks", tmp


def _moved(model, device):
    """The test's own copy of ``model`` on ``device``."""
    return copy.deepcopy(model).to(device)


def _data(t: torch.Tensor) -> torch.Tensor:
    return t.elem if isinstance(t, SimTensor) else t


def _same_state(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(_data(sa[k]), _data(sb[k])) for k in sa)


# ------------------------------------------------------------------------------ the harness itself


def test_the_simulated_gpu_refuses_what_a_gpu_refuses_and_allows_what_it_allows():
    with simulated_device("cuda") as dev:
        x = torch.arange(6.0, device=dev)
        assert x.device.type == "cuda" and x.is_cuda
        with pytest.raises(DeviceMix, match="same device"):
            x.index_select(0, torch.tensor([0, 2]))  # the crash notebook 02 met on Colab
        with pytest.raises(DeviceMix):
            x + torch.ones(6)
        assert (x + torch.tensor(1.0)).tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]  # a 0-dim CPU scalar is fine
        assert x[torch.tensor([1, 3])].tolist() == [1.0, 3.0]  # CPU indices in advanced indexing are fine
        assert x.index_select(0, torch.tensor([0, 2], device=dev)).tolist() == [0.0, 2.0]
        assert x.cpu().device.type == "cpu" and x.sum().item() == 15.0
        conv = torch.nn.Conv2d(3, 2, 1).to(dev)
        assert devices_of(conv) == {"cuda"}
        with pytest.raises(DeviceMix):
            conv(torch.zeros(1, 3, 4, 4))


def test_the_meta_kind_trains():
    with simulated_device("meta") as dev:
        layer = torch.nn.Linear(3, 1).to(dev)
        before = layer.weight.detach().cpu().clone()
        layer(torch.ones(2, 3, device=dev)).sum().backward()
        torch.optim.SGD(layer.parameters(), lr=0.5).step()
        assert torch.equal(layer.weight.detach().cpu(), before - 0.5 * torch.full((1, 3), 2.0))


# ------------------------------------------------------------------------------ the caller's model stays put


def _callers(model, ds, ranks, dev):
    """One call per library function that runs a model on a device (what the notebooks reach)."""
    batches = lambda: image_batches(VOCDataset(ds.root, split="test", transform=TestTransform(  # noqa: E731
        model.image_size, model.cfg.image_mean, model.cfg.image_std)), 2, 1)
    return {
        "Predictor": lambda: Predictor(model, dev).predict(ds.get_image(0)),
        "quick_map": lambda: quick_map(model, ds, dev),
        "evaluate_model": lambda: evaluate_model(model, ds, ranks.parent / "eval", device=dev, progress=False),
        "compute_ranks": lambda: compute_ranks(model, batches(), dev, progress=False),
        "rank_sets": lambda: rank_sets(model, VOCDataset(ds.root, split="test", transform=TestTransform(
            model.image_size, model.cfg.image_mean, model.cfg.image_std)), [1, 1], device=dev, progress=False),
        "layer_sensitivity": lambda: layer_sensitivity(model, ds, "hrank", ranks, rates=(0.5,), layers=(2,),
                                                       device=dev, progress=False),
        "benchmark_models": lambda: benchmark_models({"m": model}, device=dev, warmup=0, runs=1, predict=False,
                                                     channels_last=True, progress=False),
        "compare_fine_grained": lambda: compare_fine_grained(model, prune_model(model, [0.5] * 14, "l1")[0], ds,
                                                             device=dev, warmup=0, runs=1, progress=False),
    }


CALLERS = ["Predictor", "quick_map", "evaluate_model", "compute_ranks", "rank_sets", "layer_sensitivity",
           "benchmark_models", "compare_fine_grained"]


@pytest.mark.parametrize("name", CALLERS)
def test_a_library_call_on_the_gpu_leaves_the_callers_model_where_and_as_it_was(setup, name):
    model, ds, ranks, _ = setup
    model.train()  # a mode to keep, too
    params = [p for p in model.parameters()]
    with simulated_device("cuda") as dev:
        _callers(model, ds, ranks, dev)[name]()
    assert devices_of(model) == {"cpu"}
    assert all(m.training for m in model.modules())
    assert all(a is b for a, b in zip(params, model.parameters()))
    model.eval()


def test_notebook_02_on_a_gpu_sensitivity_then_pruning(setup):
    """What stopped notebook 02 on every Colab GPU: the sensitivity scan moved the baseline to CUDA, then pruning
    indexed its CUDA weights with CPU indices."""
    model, ds, ranks, _ = setup
    with simulated_device("cuda") as dev:
        table = layer_sensitivity(model, ds, "hrank", ranks, rates=(0.5,), layers=(1, 14), device=dev,
                                  progress=False)
        pruned, kept = prune_model(model, [0.5] * 14, "hrank", ranks)
    assert list(table["rate"]) == [0.0, 0.5, 0.0, 0.5]
    assert devices_of(pruned) == {"cpu"} and len(kept["conv1_1"]) == 4


@pytest.mark.parametrize("criterion", CRITERIA)
def test_pruning_a_model_on_the_gpu_gives_the_cpus_model_there(setup, criterion):
    model, _, ranks, _ = setup
    on_cpu, kept_cpu = prune_model(model, [0.3] * 7 + [0.5] * 7, criterion, ranks, seed=1)
    with simulated_device("cuda") as dev:
        moved = _moved(model, dev)
        on_gpu, kept_gpu = prune_model(moved, [0.3] * 7 + [0.5] * 7, criterion, ranks, seed=1)
        masked = masked_copy(moved, kept_gpu)
        assert devices_of(on_gpu) == {"cuda"} and devices_of(masked) == {"cuda"}
    assert kept_gpu == kept_cpu and _same_state(on_gpu, on_cpu)
    assert _same_state(masked, masked_copy(model, kept_cpu))


def test_results_on_the_gpu_equal_the_cpus(setup):
    """Same kernels under the simulation: device-independent code gives the CPU's numbers exactly."""
    model, ds, ranks, tmp = setup
    cpu_table, _ = evaluate_model(model, ds, tmp / "eval-cpu", device="cpu", progress=False)
    batches = lambda: image_batches(VOCDataset(ds.root, split="test", transform=TestTransform(  # noqa: E731
        model.image_size, model.cfg.image_mean, model.cfg.image_std)), 3, 1)
    cpu_ranks = compute_ranks(model, batches(), "cpu", progress=False)
    with simulated_device("cuda") as dev:
        moved = _moved(model, dev)
        gpu_table, _ = evaluate_model(moved, ds, tmp / "eval-gpu", device=dev, progress=False)
        gpu_ranks = compute_ranks(moved, batches(), dev, progress=False)
    pd.testing.assert_frame_equal(gpu_table, cpu_table)
    assert mean_ap(gpu_table) == mean_ap(cpu_table)
    assert all(np.array_equal(a, b) for a, b in zip(gpu_ranks, cpu_ranks))


def test_validation_loss_on_the_gpu_restores_the_training_mode(setup):
    from hrank_ssd.nets.priors import MatchPrior

    model, ds, _, _ = setup
    val = VOCDataset(ds.root, split="test", transform=TestTransform(model.image_size, model.cfg.image_mean,
                                                                    model.cfg.image_std),
                     target_transform=MatchPrior(model.priors, model.cfg), is_test=True)
    expected = validation_loss(model, val)
    with simulated_device("meta") as dev:
        moved = _moved(model, dev).train()
        got = validation_loss(moved, val, device=dev)
        assert moved.training and devices_of(moved) == {"meta"}
    assert got == expected


def test_evaluating_restores_each_submodules_own_mode():
    from hrank_ssd.devices import evaluating

    model = build_model("vgg16-ssd", 6, width=0.125).train()
    model.base_net[0].eval()
    with evaluating(model):
        assert not any(m.training for m in model.modules())
    assert not model.base_net[0].training and model.training and model.base_net[2].training


def test_model_on_copies_only_when_it_must():
    from hrank_ssd.devices import model_on

    model = build_model("mb1-ssd", 6, width=0.25)
    assert model_on(model, "cpu") is model
    last = model_on(model, "cpu", channels_last=True)
    assert last is not model and model.base_net[0][0].weight.is_contiguous()
    assert last.base_net[0][0].weight.is_contiguous(memory_format=torch.channels_last)
    assert model_on(last, "cpu", channels_last=True) is last


def test_a_latency_table_measured_on_the_gpu_times_models_there():
    from hrank_ssd.latency.measure import measure_latency_table
    from hrank_ssd.measure.bench import benchmark_models

    with simulated_device("cuda") as dev:
        table = measure_latency_table("vgg16-ssd", device=dev, width=0.125, image_size=300, grid=2, runs=1, warmup=0,
                                      num_classes=6, progress=False, check_copies=1)
        model = build_model("vgg16-ssd", 6, width=0.125).train()
        times = benchmark_models({"m": model}, table.device, table.batch_size, warmup=0, runs=1, predict=False)
    assert table.device == "cuda:0" and table.block == 32  # a warp: the GPU's channel block
    assert times["forward_median_ms"].item() > 0 and devices_of(model) == {"cpu"} and model.training


# ------------------------------------------------------------------------------ the course on a second device


@pytest.fixture(scope="module")
def course_on_meta(tmp_path_factory):
    """The tiny course's steps, training included, on the "meta" kind (the full-size benchmark, frontier and FLOPs
    steps aside: the calls above cover their device handling), then the notebooks' own calls that run a model."""
    tmp = tmp_path_factory.mktemp("course-meta")
    _, undo = install_conv_clock()  # the latency table and the models it chooses: the same on any machine
    try:
        with simulated_device("meta") as dev:
            course = Course("tiny", tmp / "run", tmp / "work", device=str(dev), progress=False)
            run_steps(course, [s for s in STEPS if s not in ("bench", "frontier", "flops")], log=lambda _: None)
            tried = course.try_compress_rate("[0.3]*14")
            course.choose_compress_rate("[0.2]*14")
            finetuned = course.finetune_choice()
            resumed = course.resume_lesson()
    finally:
        undo()
    return course, tried, finetuned, resumed


@pytest.mark.slow
def test_the_course_trains_prunes_and_evaluates_on_a_second_device(course_on_meta):
    course, tried, finetuned, resumed = course_on_meta
    summary = pd.read_csv(course.result("map.csv"))
    assert len(summary) == 6 and summary["mAP"].between(0, 1).all()
    assert 0 <= tried.map <= 1 and finetuned.is_file() and len(resumed)
    assert len(pd.read_csv(course.result("sensitivity.csv"))) and len(pd.read_csv(course.result("criteria.csv")))
