"""Shared fixtures. Add new ones below; keep them cheap or session-scoped."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


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
    from hrank_ssd.synthetic import make_synthetic_voc

    return make_synthetic_voc(tmp_path_factory.mktemp("synthetic"), num_train=24, num_test=12, image_size=300, seed=0)
