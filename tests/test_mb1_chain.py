"""MobileNetV1-SSD through the whole CLI chain, as a user runs it: train -> rank -> prune -> load -> finetune ->
eval, with the pruned checkpoint proven equal to the trained model with the removed filters zeroed."""

from __future__ import annotations

import pytest
import torch

from hrank_ssd.cli import main
from hrank_ssd.hrank.pruning import masked_copy
from hrank_ssd.nets.models import build_model, count_parameters, load_model, read_sidecar
from hrank_ssd.nets.registry import num_prunable


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
    from hrank_ssd.data.synthetic import make_synthetic_voc

    return make_synthetic_voc(tmp_path_factory.mktemp("voc"), num_train=8, num_test=4, image_size=300, seed=4)


def _final(folder):
    return sorted(folder.glob("mb1-ssd-Epoch-*-Loss-*.pth"))[-1]


def test_mb1_ssd_train_rank_prune_finetune_eval(voc, tmp_path, capsys):
    common = ["--dataset", str(voc)]
    train = ["train", "--net", "mb1-ssd", "--datasets", str(voc), "--validation_dataset", str(voc), "--width", "0.25",
             "--batch_size", "4", "--num_epochs", "1", "--validation_epochs", "0", "--device", "cpu",
             "--optimizer", "adam", "--lr", "2e-3", "--init", "lsuv", "--no_progress"]
    assert main(train + ["--checkpoint_folder", str(tmp_path / "base")]) == 0
    base = _final(tmp_path / "base")

    assert main(["rank", "--net", "mb1-ssd", "--base_net", str(base), *common, "--limit", "1", "--batch_size", "2",
                 "--rank_dir", str(tmp_path / "ranks"), "--device", "cpu"]) == 0
    files = sorted((tmp_path / "ranks").glob("rank_conv*.npy"))
    assert len(files) == num_prunable("mb1-ssd")

    rate = "[0.5]*14"
    assert main(["prune", "--net", "mb1-ssd", "--base_net", str(base), "--rank_dir", str(tmp_path / "ranks"),
                 "--compress_rate", rate, "--output", str(tmp_path / "pruned.pth")]) == 0
    original, pruned = load_model(base).eval(), load_model(tmp_path / "pruned.pth").eval()
    # exactly the shapes of an MB1-SSD built at that rate (a rebuilt smaller net, not a masked one)
    assert count_parameters(pruned) == count_parameters(build_model("mb1-ssd", 6, width=0.25, compress_rate=[0.5] * 14))
    assert count_parameters(pruned) < count_parameters(original)
    kept = read_sidecar(tmp_path / "pruned.pth")["kept_indices"]
    x = torch.randn(2, 3, 300, 300, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for got, want in zip(pruned(x), masked_copy(original, kept)(x)):
            # same arithmetic minus exact zeros; float32 sums in another order: 1e-4 of outputs of order 1-10
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)

    assert main(train + ["--base_net", str(tmp_path / "pruned.pth"), "--checkpoint_folder", str(tmp_path / "ft"),
                         "--init", "default"]) == 0
    tuned = load_model(_final(tmp_path / "ft"))
    assert tuned.plan == pruned.plan and count_parameters(tuned) == count_parameters(pruned)
    assert any(not torch.equal(a, b) for a, b in zip(tuned.state_dict().values(), pruned.state_dict().values()))

    capsys.readouterr()
    assert main(["eval", "--net", "mb1-ssd", "--trained_model", str(_final(tmp_path / "ft")), *common,
                 "--label_file", str(voc / "labels.txt"), "--eval_dir", str(tmp_path / "eval"), "--device", "cpu",
                 "--no_progress"]) == 0
    out = capsys.readouterr().out
    assert "Average Precision Per-class:" in out and (tmp_path / "eval" / "ap.csv").is_file()
