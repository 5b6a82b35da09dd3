"""Rank generation: the right feature maps, batched ranks equal the per-map loop, files, CLI."""

import threading

import numpy as np
import pytest
import torch

from hrank_ssd.cli import main
from hrank_ssd.models import VGG_CONV_INDEXES, build_model, save_model
from hrank_ssd.ranks import batched_ranks, compute_ranks, ranks_one_at_a_time


def test_rank_of_known_matrices():
    maps = torch.zeros(1, 3, 6, 6)
    maps[0, 1] = torch.outer(torch.arange(1.0, 7), torch.ones(6))  # rank 1
    maps[0, 2] = torch.eye(6)  # rank 6
    assert batched_ranks(maps).tolist() == [[0.0, 1.0, 6.0]]


@pytest.mark.parametrize("workers", [1, 3])
def test_batched_equals_one_at_a_time(workers):
    torch.manual_seed(0)
    maps = torch.relu(torch.randn(3, 5, 19, 19))
    maps[:, 2, 5:] = 0  # some rank-deficient maps
    maps[1, 3] = 0  # a dead map
    threads = torch.get_num_threads()
    assert torch.equal(batched_ranks(maps, chunk=4, workers=workers), ranks_one_at_a_time(maps))
    seen = []  # threads started later (data loaders, other pools) inherit torch's process-wide setting
    worker = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    worker.start()
    worker.join()
    assert torch.get_num_threads() == threads and seen == [threads]  # the one-core workers leave it alone


def test_ranks_are_those_of_every_prunable_relu_output():
    torch.manual_seed(0)
    model = build_model("vgg16-ssd", 6, width=0.125).eval()
    x = torch.randn(2, 3, 300, 300)
    ranks = compute_ranks(model, [x[:1], x[1:]], progress=False)
    assert [r.size for r in ranks] == model.plan.prunable and all(r.dtype == np.float32 for r in ranks)
    # independent computation: run base_net by hand and take each conv's ReLU output
    expected, h = [], x
    with torch.no_grad():
        for i, layer in enumerate(model.base_net[: VGG_CONV_INDEXES[13] + 2]):
            h = layer(h)
            if i - 1 in VGG_CONV_INDEXES[:14]:
                expected.append(ranks_one_at_a_time(h).mean(0).numpy())
    for got, want in zip(ranks, expected):
        np.testing.assert_array_equal(got, want)


def test_rank_cli_on_synthetic_voc(synthetic_voc, tmp_path):
    model = build_model("vgg16-ssd", 6, width=0.125)
    save_model(model, tmp_path / "m.pth")
    args = ["rank", "--dataset", str(synthetic_voc), "--base_net", str(tmp_path / "m.pth"), "--limit", "1",
            "--batch_size", "2", "--label_file", str(synthetic_voc / "labels.txt")]
    assert main(args + ["--rank_dir", str(tmp_path / "a")]) == 0
    assert main(args + ["--rank_dir", str(tmp_path / "b")]) == 0
    assert main(args + ["--rank_dir", str(tmp_path / "c"), "--shuffle", "--seed", "1"]) == 0
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == sorted(f"rank_conv{i}.npy" for i in range(1, 15))
    a = [np.load(tmp_path / "a" / f"rank_conv{i}.npy") for i in range(1, 15)]
    b = [np.load(tmp_path / "b" / f"rank_conv{i}.npy") for i in range(1, 15)]
    c = [np.load(tmp_path / "c" / f"rank_conv{i}.npy") for i in range(1, 15)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))  # deterministic by default
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))  # shuffled sample differs
    assert a[0].dtype == np.float32 and a[13].shape == (model.plan.prunable[13],)


@pytest.mark.parametrize("extra,msg", [(["--limit", "0"], "at least 1"), (["--dataset", "/nonexistent"], "")])
def test_rank_cli_errors(tmp_path, synthetic_voc, capsys, extra, msg):
    save_model(build_model("vgg16-ssd", 6, width=0.125), tmp_path / "m.pth")
    args = ["rank", "--dataset", str(synthetic_voc), "--base_net", str(tmp_path / "m.pth"),
            "--rank_dir", str(tmp_path / "r")] + extra
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and msg in err[0]


def test_rank_benchmark_procedures_agree(repo_root, tmp_path):
    """benchmarks/bench_ranks.py: the original procedure, ours and the mixed ones give identical ranks,
    at one thread and with the SVDs spread over worker threads (timings are not asserted)."""
    import json
    import subprocess
    import sys

    out = tmp_path / "ranks.json"
    subprocess.run([sys.executable, str(repo_root / "benchmarks" / "bench_ranks.py"), "--width", "0.125",
                    "--images", "1", "--threads", "1,2", "--repeats", "1", "--json", str(out)],
                   check=True, capture_output=True, timeout=300)
    rows = json.loads(out.read_text())["rows"]
    assert [(r["threads"], r["identical_ranks"]) for r in rows] == [(1, True)] * 4 + [(2, True)] * 4
