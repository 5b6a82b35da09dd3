"""Atomic writes: a failure mid-write keeps the old file and leaves no temporary behind."""

import os
import subprocess
import sys

import pytest

from hrank_ssd.io.files import atomic_save, atomic_savefig, atomic_write_text


def test_failed_save_keeps_the_old_file(tmp_path):
    path = tmp_path / "model.pth"
    atomic_write_text(path, "good")
    with pytest.raises(TypeError, match="pickle"):
        atomic_save({"ok": 1, "bad": (i for i in [])}, path)  # a generator cannot be pickled: fails mid-way
    assert path.read_text() == "good"
    assert [p.name for p in tmp_path.iterdir()] == ["model.pth"]


def test_savefig_writes_png_and_closes(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure()
    out = atomic_savefig(fig, tmp_path / "plots" / "a.png")
    assert out.read_bytes()[:4] == b"\x89PNG" and not plt.fignum_exists(fig.number)


@pytest.mark.parametrize("setup, backend", [
    ("", "agg"),  # a headless script: Agg
    ("import matplotlib; matplotlib.use('svg'); import matplotlib.pyplot", "svg"),  # a notebook's own backend kept
])
def test_pyplot_keeps_a_chosen_backend(setup, backend, tmp_path):
    """Drawing the loss curves must not switch a notebook's inline backend to Agg (every later plt.show() in the
    kernel would draw nothing)."""
    log = tmp_path / "log.csv"
    log.write_text("epoch,train_loss,val_loss\n1,2.0,2.5\n2,1.0,1.5\n")
    code = (f"{setup}\nfrom hrank_ssd.train.logs import plot_curves\nplot_curves({str(log)!r}, "
            f"{str(tmp_path / 'c.png')!r})\nimport matplotlib\nprint(matplotlib.get_backend().lower())")
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip().splitlines()[-1] == backend
    assert (tmp_path / "c.png").stat().st_size > 0
