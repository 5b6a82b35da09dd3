"""The rehearsal's environment: finding Colab's Python, the pins it installs (and what the fallback leaves out),
the kernel lines of the summary, and the checkout copied without git. Interpreters here are stand-in scripts;
``make rehearse`` builds the real venv."""

from __future__ import annotations

import os
import stat

import pytest
from rehearsal import env as rehearsal_env
from rehearsal.env import (
    _install_pins,
    colab_python_version,
    copy_checkout,
    find_colab_python,
    python_version,
)
from rehearsal.run import kernel_lines

from hrank_ssd.errors import HRankError


def _script(path, body):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture
def bare_path(tmp_path, monkeypatch):
    """A PATH holding only a folder of stand-in commands (and /bin for sh)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}/bin")
    return bin_dir


def test_python_version_of_a_running_and_a_broken_interpreter(tmp_path):
    assert python_version(_script(tmp_path / "py", "echo 3.13.4")) == "3.13.4"
    assert python_version(_script(tmp_path / "shim", "echo 'pyenv: python3.13: command not found' >&2; exit 127")) \
        is None
    assert python_version(tmp_path / "missing") is None


def test_explicit_python_must_be_colabs(tmp_path):
    good = _script(tmp_path / "good", "echo 3.13.1")
    assert find_colab_python("3.13", str(good)) == (good, "3.13.1")
    with pytest.raises(HRankError, match=r"^--python .*old is Python 3\.11\.7, not Colab's 3\.13: pass a Python 3\.13"):
        find_colab_python("3.13", str(_script(tmp_path / "old", "echo 3.11.7")))
    with pytest.raises(HRankError, match=r"^--python .*nothing does not run: pass a Python 3\.13 interpreter"):
        find_colab_python("3.13", str(tmp_path / "nothing"))


def test_path_first_then_pyenv_newest_then_none(tmp_path, bare_path):
    assert find_colab_python("3.13", None)[0] is None  # nothing anywhere
    root = tmp_path / "pyenv-root"
    _script(bare_path / "pyenv", f"echo {root}")
    for v in ("3.13.0", "3.13.2", "3.12.1"):
        _script(root / "versions" / v / "bin" / f"python{v[:4]}", f"echo {v}")
    (root / "versions" / "3.13.9t").mkdir()  # a free-threaded build's folder is not taken
    # a pyenv shim on PATH that runs no version is skipped; pyenv's newest 3.13 is taken
    _script(bare_path / "python3.13", "exit 127")
    assert find_colab_python("3.13", None) == (root / "versions" / "3.13.2" / "bin" / "python3.13", "3.13.2")
    # a python3.13 on PATH that runs comes first
    on_path = _script(bare_path / "python3.13", "echo 3.13.5")
    assert find_colab_python("3.13", None) == (on_path, "3.13.5")


def test_colabs_python_comes_from_the_pins_header(tmp_path, repo_root):
    assert colab_python_version(repo_root) == "3.13"
    (tmp_path / "colab").mkdir()
    (tmp_path / "colab" / "colab-gpu-2026-08.txt").write_text("# no version here\ntorch==2.11.0\n")
    with pytest.raises(HRankError, match="names no Python version: add Colab's to its header"):
        colab_python_version(tmp_path)


def test_pins_with_colabs_python_install_or_fail(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(rehearsal_env, "_pip", lambda py, venv, log, *a: calls.append(a) or None)
    pins = ["torch==2.11.0", "torchvision==0.26.0", "numpy==2.1.3", "gdown==5.2.2"]
    assert _install_pins(tmp_path / "python", tmp_path, pins, False, print) == []
    assert calls == [("torch==2.11.0", "torchvision==0.26.0"), ("numpy==2.1.3", "gdown==5.2.2")]
    monkeypatch.setattr(rehearsal_env, "_pip", lambda py, venv, log, *a: "no matching distribution")
    with pytest.raises(HRankError, match=r"could not build the Colab-like environment .*pip install torch==2\.11\.0"):
        _install_pins(tmp_path / "python", tmp_path, pins, False, print)


def test_fallback_installs_what_it_can(tmp_path, monkeypatch):
    from importlib.metadata import version

    calls = []

    def pip(py, venv, log, *args):
        calls.append(args)
        return "no wheel" if "torch==2.11.0" in args or args == ("gdown==5.2.2",) or len(args) > 1 and \
            "numpy==2.1.3" in args else None

    monkeypatch.setattr(rehearsal_env, "_pip", pip)
    warned = []
    pins = ["torch==2.11.0", "torchvision==0.26.0", "numpy==2.1.3", "gdown==5.2.2"]
    left_out = _install_pins(tmp_path / "python", tmp_path, pins, True, warned.append)
    assert left_out == ["torch==2.11.0", "torchvision==0.26.0", "gdown==5.2.2"]
    assert (f"torch=={version('torch')}", f"torchvision=={version('torchvision')}") in calls  # the local pair
    assert ("numpy==2.1.3",) in calls  # each pin alone once the group failed
    assert any("WARNING" in w and "torch==2.11.0" in w for w in warned)


def _summary(colab_env):
    return {"profile": "full-rehearsal", "processor": "x86_64", "device": "cpu", "kernel_python": "/v/bin/python",
            "kernel_python_version": "3.13.0", "kernel_torch": "2.11.0", "colab_env": colab_env,
            "packages": {"torch": "2.11.0", "numpy": "2.1.3", "ipywidgets": "7.7.1"}}


def test_kernel_lines_name_python_torch_and_the_fallback():
    env = {"python": "3.13.0", "colab_python": "3.13", "fallback": None, "pins_left_out": []}
    lines = kernel_lines(_summary(env))
    assert "kernel Python 3.13.0, torch 2.11.0" in lines[0] and "notebooks on cpu" in lines[0]
    assert lines[1] == "kernel: Colab's Python 3.13 with every pin of the Colab pins file"
    fallback = dict(env, fallback="no python3.13 that runs", pins_left_out=["torch==2.11.0"])
    assert kernel_lines(_summary(fallback))[1] == ("WARNING: not Colab's Python 3.13 (no python3.13 that runs); "
                                                   "pins not installed: torch==2.11.0")
    assert "not a Colab-like venv" in kernel_lines(_summary(None))[1]


def test_checkout_copied_without_git_skips_what_gitignore_ignores(tmp_path, bare_path):
    repo = tmp_path / "tree"
    for rel in ("lib/hrank_ssd/__init__.py", "notebooks/00_setup.ipynb", "pyproject.toml", ".venv/bin/python",
                "runs/latest/report.md", "lib/hrank_ssd/__pycache__/x.pyc", "lib/x.egg-info/PKG-INFO",
                "tests/runs/keep.txt", ".gpu-wheels/a.whl"):
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text("x")
    (repo / ".gitignore").write_text(".venv/\n__pycache__/\n*.egg-info/\n/runs/\n/.gpu-wheels/\n# a comment\n")
    _script(bare_path / "git", "exit 128")  # not a checkout
    copy_checkout(repo, tmp_path / "copy")
    got = sorted(str(p.relative_to(tmp_path / "copy")) for p in (tmp_path / "copy").rglob("*") if p.is_file())
    assert got == [".gitignore", "lib/hrank_ssd/__init__.py", "notebooks/00_setup.ipynb", "pyproject.toml",
                   "tests/runs/keep.txt"]
    with pytest.raises(HRankError, match="is not a checkout of hrank-ssd: rehearse from a clone"):
        copy_checkout(tmp_path / "copy" / "notebooks", tmp_path / "other")


@pytest.mark.parametrize("argv, message", [
    (["--python", "python3.13"], "--python makes the --colab_env venv: pass --colab_env too"),
    (["--device", "cuda"], "--device cuda asked for but no CUDA GPU is visible; use --device cpu"),
    (["--device", "tpu"], "unknown --device 'tpu': use cpu, cuda or cuda:N"),
])
def test_rehearse_flags_are_one_line_errors(tmp_path, capsys, argv, message):
    import torch
    from rehearse import main  # tools/rehearse.py

    if "cuda" in argv and torch.cuda.is_available():
        pytest.skip("a GPU is visible here")
    assert main(["--out", str(tmp_path / "r"), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}") and err.count("\n") == 1 and not (tmp_path / "r").exists()
