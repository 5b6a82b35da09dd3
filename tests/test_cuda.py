"""CUDA paths (skipped without a GPU; run them whenever one is lent): AMP finetuning (NCHW and channels-last) and
its exact resume with the gradient scaler's state, the benchmark with --amp, and CUDA evaluation against CPU evaluation."""

from __future__ import annotations

import json

import pytest
import torch

from hrank_ssd.cli import main
from hrank_ssd.nets.models import build_model
from hrank_ssd.train.checkpoints import read_checkpoint
from hrank_ssd.train.config import TrainConfig
from hrank_ssd.train.trainer import train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
    from hrank_ssd.data.synthetic import make_synthetic_voc

    return make_synthetic_voc(tmp_path_factory.mktemp("voc"), num_train=8, num_test=4, image_size=300, seed=1)


@pytest.fixture
def deterministic(monkeypatch):
    """Same kernels in the same order on every run: cuDNN's deterministic algorithms, no autotuning, and torch's
    deterministic mode (warn_only: an op without a deterministic kernel warns, and the equality below then says
    whether it mattered). cuBLAS reads its workspace setting when its first handle is made."""
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    old = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark,
           torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    torch.use_deterministic_algorithms(True, warn_only=True)
    yield
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = old[:2]
    torch.use_deterministic_algorithms(old[2], warn_only=old[3])


def _cfg(root, folder, **kw):
    base = dict(datasets=[str(root)], validation_dataset=str(root), width=0.125, batch_size=4, lr=3e-3, seed=3,
                validation_epochs=0, progress=False, num_epochs=2, checkpoint_folder=str(folder), device="cuda",
                amp=True)
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
def test_amp_finetune_resumes_exactly_with_the_scaler_state(voc, tmp_path, deterministic, channels_last):
    ref = train(_cfg(voc, tmp_path / "ref", channels_last=channels_last))
    state = read_checkpoint(ref.last_checkpoint)
    assert state["scaler"] and state["scaler"]["scale"] > 0  # the scaler's state is saved
    assert all(t.is_contiguous() for t in state["model"].values())  # written NCHW whatever the training layout
    train(_cfg(voc, tmp_path / "cut", num_epochs=1, channels_last=channels_last))
    resumed = train(_cfg(voc, tmp_path / "cut", resume="auto", channels_last=channels_last))
    assert read_checkpoint(resumed.last_checkpoint)["scaler"]["scale"] == state["scaler"]["scale"]
    a, b = ref.model.state_dict(), resumed.model.state_dict()
    # deterministic kernels replay the same fp16 roundings: identical up to float32 printing noise
    assert max((a[k].float() - b[k].float()).abs().max().item() for k in a if a[k].is_floating_point()) <= 1e-6
    assert torch.isfinite(torch.tensor([r["train_loss"] for r in resumed.history])).all()


def test_bench_cuda_amp(tmp_path):
    out = tmp_path / "bench.json"
    assert main(["bench", "--nets", "vgg16-ssd,mb1-ssd", "--device", "cuda", "--amp", "--warmup", "2", "--runs", "5",
                 "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["device"] == "cuda" and all(r["forward_median_ms"] > 0 for r in data["results"])


def test_cuda_evaluation_matches_cpu(voc, tmp_path):
    from hrank_ssd.data.voc import VOCDataset
    from hrank_ssd.measure.evaluation import evaluate_model, mean_ap

    torch.manual_seed(0)
    model = build_model("mb1-ssd", 6, width=0.25).eval()
    ds = VOCDataset(voc, split="test", is_test=True)
    cpu, _ = evaluate_model(model, ds, tmp_path / "cpu", device="cpu", progress=False)
    gpu, _ = evaluate_model(model.cuda(), ds, tmp_path / "gpu", device="cuda", progress=False)
    # float32 kernels differ (cuDNN vs oneDNN: ~1e-5 relative in scores), which can swap near-tied detections
    # at a rank boundary: AP may move by a few thousandths, never more
    assert abs(mean_ap(cpu) - mean_ap(gpu)) <= 5e-3
    assert (cpu["gts"] == gpu["gts"]).all()
