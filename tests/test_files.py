"""Atomic writes: a failure mid-write keeps the old file and leaves no temporary behind."""

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
