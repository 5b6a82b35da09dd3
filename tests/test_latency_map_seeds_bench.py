"""benchmarks/latency_map_seeds.py: seed 0 repeats the course's own finetune exactly, and the summary's numbers."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from conftest import load_benchmark


@pytest.fixture(scope="module")
def seeds_bench():
    return load_benchmark("latency_map_seeds")


def test_seed_0_is_the_courses_own_finetune(seeds_bench, tiny_course, tmp_path):
    from hrank_ssd.measure.sensitivity import quick_map
    from hrank_ssd.nets.models import load_model

    course, _ = tiny_course
    ours = seeds_bench.finetune(course, course.pruned(), tmp_path / "bench-s0", 0)
    theirs = load_model(course.finetuned())
    assert ours == quick_map(theirs, course.test_dataset())
    weights = torch.load(next((tmp_path / "bench-s0").glob("vgg16-ssd-Epoch-*.pth")), weights_only=True)
    assert all(torch.equal(weights[k], v) for k, v in theirs.state_dict().items())


def test_the_flags_reach_the_seed_macs_model(seeds_bench, tiny_course, tmp_path):
    """--min_keep and --keep set the seed-MACs model's own profile fields (min_keep alone would not reach it)."""
    from hrank_ssd.measure.budgets import fastest_widths_at_mac_cap

    course, base = tiny_course
    cap, table = course.seed_mac_cap(base), course.latency_table()  # one table, cached in the work folder
    for min_keep, keep in ((0.0, 0.99), (0.5, 0.99), (0.5, 0.8)):
        other = seeds_bench.course_at("tiny", course.work.parent, tmp_path / "run", min_keep, keep)
        widths = seeds_bench.latency_init(other, tmp_path / f"mk{min_keep}-k{keep}.pth")["widths"]
        assert all(k >= min_keep * c for k, c in zip(widths, base.plan.prunable))
        assert widths == fastest_widths_at_mac_cap(base, table, cap, course.rank_dir(), min_keep=min_keep,
                                                   keep=keep).widths  # both flags, exactly as the library takes them


def test_summary_counts_the_seeds_within_the_target(seeds_bench):
    rows = pd.DataFrame({"min_keep": [0.25] * 3 + [0.5] * 3, "keep": [0.99] * 6, "seed": [0, 1, 2] * 2,
                         "difference": [-0.02, 0.0, 0.01, -0.005, -0.01, 0.004],
                         "latency predicted speed-up": [1.5] * 3 + [1.4] * 3, "seed predicted speed-up": [1.2] * 6})
    table = seeds_bench.summary(rows).set_index("min_keep")
    assert table.loc[0.25, "mean difference"] == pytest.approx(-0.01 / 3)
    assert table.loc[0.25, "worst"] == -0.02 and table.loc[0.25, "seeds within -0.01"] == 2
    assert table.loc[0.5, "seeds within -0.01"] == 3 and table.loc[0.5, "target (d) on the mean"] == "met"
    assert table.loc[0.5, "std"] == pytest.approx(pd.Series([-0.005, -0.01, 0.004]).std())
