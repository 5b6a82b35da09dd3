"""Rank generation: the right feature maps, batched ranks equal the per-map loop, files, CLI."""

import threading

import numpy as np
import pytest
import torch
from support.rank_bounds import BORDERLINE_FACTOR, rank_agreement, rank_bounds  # what a correct SVD allows

from hrank_ssd.cli import main
from hrank_ssd.errors import HRankError
from hrank_ssd.hrank.ranks import (
    batched_ranks,
    compute_ranks,
    has_ranks,
    image_batches,
    load_ranks,
    rank_summary,
    ranks_one_at_a_time,
    save_ranks,
)
from hrank_ssd.nets.models import build_model, save_model
from hrank_ssd.nets.vgg16_ssd import CONV_INDEXES as VGG_CONV_INDEXES


def _assert_ranks_agree(got, want, lo, hi):
    """Equal wherever no singular value is borderline; inside [lo, hi] everywhere (see tests/support/rank_bounds.py)."""
    agreement = rank_agreement([got], [want], [lo], [hi])
    print(agreement, f"(borderline: a singular value within {BORDERLINE_FACTOR}x of the tolerance)")
    assert agreement["unexplained"] == 0 and agreement["channels"] == np.asarray(got).size


def test_rank_of_known_matrices():
    maps = torch.zeros(1, 3, 6, 6)
    maps[0, 1] = torch.outer(torch.arange(1.0, 7), torch.ones(6))  # rank 1
    maps[0, 2] = torch.eye(6)  # rank 6
    assert batched_ranks(maps).tolist() == [[0.0, 1.0, 6.0]]
    ones = torch.ones(2, 2, 5, 5)  # all ones: rank 1 (only an all-zero map skips the SVD)
    ones[1, 0] = 0
    assert batched_ranks(ones).tolist() == [[1.0, 1.0], [0.0, 1.0]]


@pytest.mark.parametrize("workers", [1, 3])
def test_batched_equals_one_at_a_time(workers):
    torch.manual_seed(0)
    maps = torch.relu(torch.randn(3, 5, 19, 19))
    maps[:, 2, 5:] = 0  # some rank-deficient maps
    maps[1, 3] = 0  # a dead map
    threads = torch.get_num_threads()
    _assert_ranks_agree(batched_ranks(maps, chunk=4, workers=workers), ranks_one_at_a_time(maps), *rank_bounds(maps))
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
    expected, lows, highs, h = [], [], [], x
    with torch.no_grad():
        for i, layer in enumerate(model.base_net[: VGG_CONV_INDEXES[13] + 2]):
            h = layer(h)
            if i - 1 in VGG_CONV_INDEXES[:14]:
                expected.append(ranks_one_at_a_time(h).mean(0).numpy())
                lo, hi = rank_bounds(h)
                lows.append(lo.mean(0).numpy())
                highs.append(hi.mean(0).numpy())
    agreement = rank_agreement(ranks, expected, lows, highs)
    print(agreement)  # on some CPUs a map or two is borderline; the rest must agree exactly
    assert agreement["unexplained"] == 0
    assert agreement["equal"] >= agreement["channels"] - agreement["borderline"]


def test_ranks_of_a_training_model_leave_it_as_it_was():
    torch.manual_seed(0)
    model = build_model("vgg16-ssd", 6, width=0.125).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(2, 3, 300, 300)
    ranks = compute_ranks(model, [x], progress=False)
    assert model.training and all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # BN stats too
    again = compute_ranks(model.eval(), [x], progress=False)  # the ranks are those of the model in eval mode
    assert all(np.array_equal(a, b) for a, b in zip(ranks, again))


def test_rank_bounds_bracket_the_tolerance():
    """lo counts singular values above factor * tol, hi those above tol / factor (tol: matrix_rank's)."""
    eps = torch.finfo(torch.float32).eps
    tol = 8 * eps  # an 8x8 map whose largest singular value is 1
    cases = {0.2 * tol: (1, 1), 0.8 * tol: (1, 2), 1.5 * tol: (1, 2), 5 * tol: (2, 2)}
    for small, (lo, hi) in cases.items():
        maps = torch.diag(torch.tensor([0, 1.0, 0, 0, small, 0, 0, 0])).reshape(1, 1, 8, 8)  # exact singular values
        got = rank_bounds(maps)
        assert (got[0].item(), got[1].item()) == (lo, hi), small / tol
    dead = torch.zeros(1, 2, 5, 5)
    assert [t.tolist() for t in rank_bounds(dead)] == [[[0.0, 0.0]], [[0.0, 0.0]]]


def test_rank_agreement_counts():
    lo, hi = [np.array([3.0, 2.0, 4.0])], [np.array([3.0, 2.5, 4.0])]
    ok = rank_agreement([np.array([3.0, 2.0, 4.0])], [np.array([3.0, 2.5, 4.0])], lo, hi)
    assert ok == {"channels": 3, "equal": 2, "borderline": 1, "unexplained": 0}
    bad = rank_agreement([np.array([3.0, 2.0, 4.0])], [np.array([3.0, 2.0, 5.0])], lo, hi)
    assert bad["unexplained"] == 1  # differs where nothing is borderline (and outside [lo, hi])


def test_rank_agreement_at_its_bounds():
    """Each channel sits on one edge: ``slack`` = 1e-4 x max(1, hi), inside [lo - slack, hi + slack] inclusive,
    equal within slack inclusive; counts add up over layers."""
    s1 = 1e-4  # the slack where hi <= 1
    cases = [  # (a, b, lo, hi): what it tests
        (1.0, 1.0, 1.0, 1.0),  # equal, nothing borderline
        (0.0, s1, 0.0, 1.0),  # |a - b| == slack: equal; borderline (hi > lo)
        (0.0, 0.0, s1, s1),  # a == b == lo - slack: inside
        (s1, s1, 0.0, 0.0),  # a == b == hi + slack: inside
        (0.99993, 1.00008, 1.0, 1.0),  # inside, 1.5e-4 apart, nothing borderline: unexplained
        (0.5, 0.5, 0.5, 0.5 + 0.5),  # equal and borderline
    ]
    a, b, lo, hi = (np.array([c[k] for c in cases]) for k in range(4))
    one = rank_agreement([a], [b], [lo], [hi])
    assert one == {"channels": 6, "equal": 5, "borderline": 2, "unexplained": 1}
    big = [np.array([5.0]), np.array([5.0005]), np.array([4.0]), np.array([10.0])]  # slack 1e-3 where hi = 10
    assert rank_agreement(*([x] for x in big)) == {"channels": 1, "equal": 1, "borderline": 1, "unexplained": 0}
    two = rank_agreement([a, big[0]], [b, big[1]], [lo, big[2]], [hi, big[3]])
    assert two == {"channels": 7, "equal": 6, "borderline": 3, "unexplained": 1}
    outside = rank_agreement([np.array([2.0])], [np.array([2.0])], [np.array([1.0])], [np.array([1.5])])
    assert outside["unexplained"] == 1 and outside["equal"] == 1  # equal, but outside [lo, hi]
    one_out = rank_agreement([np.array([2.0])], [np.array([1.2])], [np.array([1.0])], [np.array([1.5])])
    assert one_out["unexplained"] == 1 and one_out["borderline"] == 1  # b inside, a outside: still unexplained


def test_the_forward_stops_after_the_last_prunable_layer_and_no_images_is_an_error():
    model = build_model("vgg16-ssd", 6, width=0.125)
    heads = []
    model.classification_headers[-1].register_forward_hook(lambda *_: heads.append(1))
    ranks = compute_ranks(model, [torch.randn(1, 3, 300, 300)], progress=False)
    assert heads == [] and len(ranks) == 14  # the heads never ran
    with pytest.raises(HRankError) as e:
        compute_ranks(model, [], progress=False)
    assert str(e.value) == "no images went through the model: the dataset or --limit is empty"


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


class Images:
    """The part of a dataset image_batches reads: ``dataset[i][0]``, an image tensor (here filled with i)."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return torch.full((3, 2, 2), float(i)), None


def _ids(batches):
    return [b[:, 0, 0, 0].int().tolist() for b in batches]


def test_image_batches_in_order_shuffled_and_limited():
    assert _ids(image_batches(Images(7), 3, limit=10)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert _ids(image_batches(Images(7), 3, limit=2)) == [[0, 1, 2], [3, 4, 5]]
    assert _ids(image_batches(Images(1), 4, limit=1)) == [[0]]
    shuffled = _ids(image_batches(Images(40), 40, limit=1, shuffle=True))[0]
    assert sorted(shuffled) == list(range(40)) and shuffled != list(range(40))
    assert shuffled == _ids(image_batches(Images(40), 40, limit=1, shuffle=True, seed=0))[0]
    assert shuffled != _ids(image_batches(Images(40), 40, limit=1, shuffle=True, seed=1))[0]
    again = _ids(image_batches(Images(40), 8, limit=2, shuffle=True, seed=1))
    assert sum(again, []) == _ids(image_batches(Images(40), 40, limit=1, shuffle=True, seed=1))[0][:16]
    with pytest.raises(HRankError) as e:
        next(image_batches(Images(0), 4, limit=1))
    assert str(e.value) == "the dataset is empty: check --dataset and its ImageSets split file"


def test_rank_files_save_check_summarise_and_load(tmp_path):
    model = build_model("vgg16-ssd", 6, width=0.125)
    channels = model.plan.prunable
    ranks = [np.arange(c, dtype=np.float64) / 2 for c in channels]
    assert not has_ranks(tmp_path, "vgg16-ssd")
    paths = save_ranks(ranks, tmp_path)
    assert paths == [tmp_path / f"rank_conv{i}.npy" for i in range(1, 15)]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)
    assert np.load(paths[0]).dtype == np.float32
    assert has_ranks(tmp_path, "vgg16-ssd")
    loaded = load_ranks(tmp_path, "vgg16-ssd", channels)
    assert all(a.dtype == np.float64 and np.array_equal(a, b) for a, b in zip(loaded, ranks))
    rows = rank_summary(loaded, "vgg16-ssd")
    assert rows[0] == {"layer": 1, "name": "conv1_1", "filters": channels[0], "min": 0.0,
                       "mean": (channels[0] - 1) / 4, "max": (channels[0] - 1) / 2}
    assert [r["layer"] for r in rows] == list(range(1, 15))
    for layer in (1, 14):
        paths[layer - 1].rename(tmp_path / "aside.npy")
        assert not has_ranks(tmp_path, "vgg16-ssd")
        (tmp_path / "aside.npy").rename(paths[layer - 1])
    paths[1].write_bytes(b"not numpy")
    with pytest.raises(HRankError) as e:
        load_ranks(tmp_path, "vgg16-ssd", channels)
    assert str(e.value) == f"{paths[1]} is not a readable .npy file; regenerate the ranks"
    save_ranks([np.zeros(c + 1) if i == 1 else r for i, (c, r) in enumerate(zip(channels, ranks))], tmp_path)
    with pytest.raises(HRankError) as e:
        load_ranks(tmp_path, "vgg16-ssd", channels)
    assert str(e.value) == (f"{paths[1]} has {channels[1] + 1} values but layer 2 (conv1_2) has {channels[1]} "
                            f"filters: these ranks belong to another model")
