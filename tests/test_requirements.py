"""Requirement ranges: requirements.txt mirrors pyproject.toml, and every range admits Colab's versions."""

from __future__ import annotations

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

COLAB = "colab/colab-gpu-2026-08.txt"


def _pyproject(repo_root):
    project = tomllib.loads((repo_root / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return project["dependencies"], extras


def _lines(path):
    return [ln.split("#")[0].strip() for ln in path.read_text().splitlines() if ln.split("#")[0].strip()]


def test_requirements_txt_lists_what_pyproject_installs(repo_root):
    core, extras = _pyproject(repo_root)
    wanted = core + [r for name in ("colab", "speed", "dev") for r in extras[name]]
    assert sorted(_lines(repo_root / "requirements.txt")) == sorted(wanted)


def test_every_range_admits_what_colab_ships(repo_root):
    pins = {}
    for line in _lines(repo_root / COLAB):
        name, version = line.split("==")
        pins[canonicalize_name(name)] = version
    core, extras = _pyproject(repo_root)
    checked = []
    for text in core + extras["colab"]:
        req = Requirement(text)
        version = pins.get(canonicalize_name(req.name))
        if version is not None:
            assert req.specifier.contains(version, prereleases=True), f"{text} refuses Colab's {version}"
            checked.append(req.name)
    # the packages Colab preinstalls and the notebooks import are all covered by the check
    for name in ("torch", "torchvision", "numpy", "pandas", "matplotlib", "gdown", "ipywidgets", "ipykernel",
                 "nbformat", "nbclient"):
        assert name in checked, name
