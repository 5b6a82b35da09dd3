"""Shared fixtures. Add new ones below; keep them cheap or session-scoped."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
if str(REPO_ROOT / "tools") not in sys.path:  # tools/rehearsal (the stand-in world...) imports as the scripts do
    sys.path.insert(0, str(REPO_ROOT / "tools"))

# Longest first (by `--durations` on a 2-core VM), so that with pytest-xdist (`make test`: `-n auto --dist
# loadfile`) the long files start at once on different workers instead of one of them starting last.
LONG_FILES = ("test_notebooks.py", "test_rehearsal.py", "test_devices.py", "test_training.py", "test_course_command.py", "test_inference_options.py", "test_ranks.py", "test_bench.py")


def pytest_configure(config):
    """Under pytest-xdist each worker gets an equal share of the cores for torch (and its notebook kernels)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1 and "OMP_NUM_THREADS" not in os.environ:
        threads = max(1, (os.cpu_count() or 1) // workers)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        import torch

        torch.set_num_threads(threads)


def pytest_collection_modifyitems(items):
    def rank(item):
        name = item.path.name
        return LONG_FILES.index(name) if name in LONG_FILES else len(LONG_FILES)

    items.sort(key=rank)  # stable: the order inside each file is kept


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_data():
    """``../shared/data`` (real VOC samples, a video, photos) or None when absent."""
    return SHARED_DATA if SHARED_DATA.is_dir() else None


@pytest.fixture(scope="session")
def synthetic_voc(tmp_path_factory) -> Path:
    """A small synthetic VOC set (24 trainval / 12 test, 300x300, seed 0): its VOCdevkit/VOC2007 folder.

    Shared by the whole session: treat it as read-only.
    """
    from hrank_ssd.data.synthetic import make_synthetic_voc

    return make_synthetic_voc(tmp_path_factory.mktemp("synthetic"), num_train=24, num_test=12, image_size=300, seed=0)


@pytest.fixture
def tiny_course(tmp_path):
    """The tiny profile's ``Course`` (cpu, no bars) with a random VGG16-SSD baseline and random ranks in place, so
    nothing is trained: ``(course, baseline model)``."""
    import numpy as np
    import torch

    from hrank_ssd.course.steps import Course
    from hrank_ssd.hrank.ranks import save_ranks
    from hrank_ssd.nets.models import build_model, save_model

    course = Course("tiny", tmp_path / "run", tmp_path / "work", device="cpu", progress=False)
    torch.manual_seed(0)
    model = build_model("vgg16-ssd", 6, width=course.profile.vgg_width)
    save_model(model, course.path("vgg16-ssd"))
    rng = np.random.default_rng(0)
    save_ranks([rng.uniform(0, 20, c) for c in model.plan.prunable], course.work / "ranks")
    return course, model


def load_benchmark(name: str):
    """``benchmarks/<name>.py`` as a module (the benchmarks are scripts, not a package)."""
    import importlib.util

    if str(REPO_ROOT / "benchmarks") not in sys.path:  # a script imports its helpers beside it, as when run
        sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module
