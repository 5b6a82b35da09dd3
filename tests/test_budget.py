"""Widths under a budget: the chain DP against brute force, MAC costs to the MAC, `prune --mac_budget` /
`--latency_budget` end to end (pruned == masked original), and the flags' one-line errors."""

import itertools
import json

import numpy as np
import pytest
import torch

from hrank_ssd.cli import main
from hrank_ssd.errors import HRankError
from hrank_ssd.hrank.pruning import (
    kept_indices,
    kept_indices_for_widths,
    masked_copy,
    prune_to_widths,
    save_pruned,
)
from hrank_ssd.hrank.ranks import save_ranks
from hrank_ssd.latency.budgets import mac_costs, map_sizes
from hrank_ssd.latency.knapsack import (
    Budget,
    ChainCosts,
    chain_cost,
    choose_counts,
    choose_counts_capped,
    kept_importance,
    layer_terms,
    normalised_ranks,
    round_costs,
)
from hrank_ssd.latency.table import grid_counts
from hrank_ssd.measure.flops import build_for_counting, count_exact
from hrank_ssd.nets.models import build_model, default_plan, layer_names, load_model, read_sidecar, save_model
from hrank_ssd.nets.ssd import kept_channels


def random_instance(rng):
    layers = int(rng.integers(3, 5))
    sizes = [int(rng.integers(3, 5)) for _ in range(layers)]
    counts = [sorted(rng.choice(np.arange(1, 30), g, replace=False).tolist()) for g in sizes]
    gains = [np.sort(rng.random(g)) for g in sizes]
    unary = [rng.random(g) * 10 for g in sizes]
    pairwise = [None] + [rng.random((sizes[i - 1], sizes[i])) * 10 for i in range(1, layers)]
    return counts, gains, unary, pairwise, float(rng.random() * 5)


def brute_force(counts, gains, unary, pairwise, budget, steps, rest):
    """Best importance over every assignment whose cost, rounded as the DP rounds it, fits (None: none fits)."""
    rounded, capacity = round_costs(unary, pairwise, budget, steps, rest)
    floor = rest + sum(float(t.min()) for t in layer_terms(unary, pairwise))
    best = None
    for ix in itertools.product(*[range(len(c)) for c in counts]):
        units = sum(int(rounded[i][0 if i == 0 else ix[i - 1], a]) for i, a in enumerate(ix))
        if budget >= floor and units <= capacity:
            value = sum(float(g[a]) for g, a in zip(gains, ix))
            best = value if best is None else max(best, value)
    return best


@pytest.mark.parametrize("seed", range(6))
def test_dp_equals_brute_force_and_never_exceeds_the_budget(seed):
    rng = np.random.default_rng(seed)
    for _ in range(25):
        counts, gains, unary, pairwise, rest = random_instance(rng)
        terms = layer_terms(unary, pairwise)
        costs = [chain_cost(terms, ix, rest) for ix in itertools.product(*[range(len(c)) for c in counts])]
        budget = float(rng.uniform(min(costs) - 1, max(costs) + 1))
        steps = int(rng.choice([3, 10, 50, 400]))
        best = brute_force(counts, gains, unary, pairwise, budget, steps, rest)
        if best is None:
            with pytest.raises(HRankError) as err:
                choose_counts(counts, gains, unary, pairwise, budget, steps, rest)
            assert "\n" not in str(err.value)
            continue
        choice = choose_counts(counts, gains, unary, pairwise, budget, steps, rest)
        assert choice.importance == pytest.approx(best, rel=1e-12)
        assert choice.cost <= budget * (1 + 1e-12) and choice.cost == pytest.approx(chain_cost(terms, choice.indices, rest))
        assert choice.counts == [c[a] for c, a in zip(counts, choice.indices)]
        exact_best = max(sum(float(g[a]) for g, a in zip(gains, ix))
                         for ix in itertools.product(*[range(len(c)) for c in counts])
                         if chain_cost(terms, ix, rest) <= budget)
        assert choice.importance <= exact_best + 1e-12  # rounding up can only lose, never overspend


@pytest.mark.parametrize("seed", range(4))
def test_capped_choice_is_exact_for_its_second_cost_and_within_the_cap(seed):
    """The Lagrangian choice under a budget and a MAC-like cap: within both, and no choice within the budget (as
    rounded) keeps more importance with at most its second cost (brute force over every assignment)."""
    rng = np.random.default_rng(100 + seed)
    checked = 0
    for _ in range(25):
        counts, gains, unary, pairwise, rest = random_instance(rng)
        sizes = [len(c) for c in counts]
        second_u = [rng.random(g) * 5 for g in sizes]
        second_pw = [None] + [rng.random((sizes[i - 1], sizes[i])) * 5 for i in range(1, len(sizes))]
        terms, second = layer_terms(unary, pairwise), layer_terms(second_u, second_pw)
        every = list(itertools.product(*[range(g) for g in sizes]))
        budget = float(np.quantile([chain_cost(terms, ix, rest) for ix in every], rng.uniform(0.3, 1.0)))
        steps = int(rng.choice([10, 50, 400]))
        rounded, capacity = round_costs(unary, pairwise, budget, steps, rest)
        fits = [ix for ix in every if sum(int(rounded[i][0 if i == 0 else ix[i - 1], a])
                                          for i, a in enumerate(ix)) <= capacity]
        seconds = [chain_cost(second, ix) for ix in fits]
        cap = float(rng.uniform(min(seconds) - 0.5, max(seconds)))
        if cap < min(seconds):
            with pytest.raises(HRankError, match="within") as err:
                choose_counts_capped(counts, gains, unary, pairwise, budget, ChainCosts(second_u, second_pw, 0.0), cap,
                                     steps, rest)
            assert "\n" not in str(err.value)
            continue
        got = choose_counts_capped(counts, gains, unary, pairwise, budget, ChainCosts(second_u, second_pw, 0.0), cap,
                                   steps, rest)
        assert got.choice.cost <= budget * (1 + 1e-12) and got.second <= cap
        assert got.second == pytest.approx(chain_cost(second, got.choice.indices))
        rivals = [sum(float(g[a]) for g, a in zip(gains, ix)) for ix, sc in zip(fits, seconds) if sc <= got.second]
        assert got.choice.importance == pytest.approx(max(rivals), rel=1e-12)
        if got.weight == 0:  # the cap does not bind: the plain choice
            assert got.choice.indices == choose_counts(counts, gains, unary, pairwise, budget, steps, rest).indices
        for factor in (0.5, 0.9, 0.99, 2.0):  # no other price gives a choice within the cap that keeps more
            other = choose_counts(counts, gains, unary, pairwise, budget, steps, rest,
                                  penalty=[got.weight * factor * t for t in second])
            assert chain_cost(second, other.indices) > cap or other.importance <= got.choice.importance + 1e-12
        checked += 1
    assert checked >= 10


def test_infeasible_budget_is_one_line_error():
    counts, gains = [[1, 2], [1, 2]], [np.array([1.0, 2.0]), np.array([1.0, 2.0])]
    unary, pairwise = [np.array([1.0, 2.0]), np.array([1.0, 2.0])], [None, np.ones((2, 2))]
    with pytest.raises(HRankError, match="below the smallest possible cost 3") as err:
        choose_counts(counts, gains, unary, pairwise, 2.5)
    assert "\n" not in str(err.value)
    full = choose_counts(counts, gains, unary, pairwise, 5.0)
    assert full.counts == [2, 2] and full.cost == 5.0 and full.importance == 4.0
    assert choose_counts(counts, gains, unary, pairwise, 3.0).counts == [1, 1]  # exactly the minimum fits


def test_importance_is_the_top_normalised_ranks():
    scores = normalised_ranks([np.array([30.0, 0.0, 15.0]), np.array([19.0, 9.5])], [300, 19])
    np.testing.assert_allclose(scores[0], [0.1, 0.0, 0.05])
    np.testing.assert_allclose(kept_importance(scores[0], [1, 2, 3]), [0.1, 0.15, 0.15])
    np.testing.assert_allclose(kept_importance(scores[1], [2]), [1.5])
    assert Budget(0.5, True).of(10.0) == 5.0 and Budget(3.0, False).of(10.0) == 3.0


@pytest.mark.parametrize("net", ["vgg16-ssd", "mb1-ssd"])
@pytest.mark.parametrize("width", [1.0, 0.125])
def test_mac_costs_are_exact(net, width):
    plan0 = default_plan(net, width)
    counts = [grid_counts(c) for c in plan0.prunable]
    costs = mac_costs(build_for_counting(net, 21, plan=plan0), counts)
    rng = np.random.default_rng(7)
    for trial in range(4):
        ix = [len(g) - 1 for g in counts] if trial == 0 else [int(rng.integers(len(g))) for g in counts]
        plan = default_plan(net, width)
        for i, a in enumerate(ix):
            plan.base[i] = counts[i][a]
        exact = int(count_exact(build_for_counting(net, 21, plan=plan))["MACs"].sum())
        assert costs.total(ix) == exact


def test_map_sizes_bound_the_ranks():
    assert map_sizes(build_model("vgg16-ssd", 6, width=0.125)) == [300] * 2 + [150] * 2 + [75] * 3 + [38] * 3 + [19] * 4
    assert map_sizes(build_model("mb1-ssd", 6, width=0.125))[:3] == [150, 150, 75]


def test_widths_give_the_rates_kept_filters(tmp_path):
    model = build_model("vgg16-ssd", 6, width=0.125)
    save_ranks(realistic_ranks(model), tmp_path)
    rates = [0.1] * 7 + [0.5] * 7
    widths = [kept_channels(c, r) for c, r in zip(model.plan.prunable, rates)]
    assert kept_indices_for_widths(model, widths, "hrank", tmp_path) == kept_indices(model, rates, "hrank", tmp_path)
    by_name = dict(zip(layer_names("vgg16-ssd"), widths))
    assert kept_indices_for_widths(model, widths, "l1") == kept_indices(model, rates, "l1")
    with pytest.raises(HRankError, match="can keep 1 to 8, not 9"):
        kept_indices_for_widths(model, [9] + widths[1:], "l1")
    pruned, kept = prune_to_widths(model, widths, "l1")
    save_pruned(pruned, tmp_path / "p.pth", None, "l1", kept, budget={"kind": "macs"})
    meta = read_sidecar(tmp_path / "p.pth")
    assert meta["widths"] == by_name and meta["compress_rate"] is None and meta["budget"] == {"kind": "macs"}
    side = tmp_path / "p.pth.json"  # a sidecar written before widths existed still loads
    side.write_text(json.dumps({k: v for k, v in meta.items() if k not in ("widths", "budget")}))
    assert load_model(tmp_path / "p.pth").plan.prunable == widths


def realistic_ranks(model, seed=0):
    """Random ranks on each layer's own scale (a map's rank is at most min(H, W))."""
    rng = np.random.default_rng(seed)
    return [rng.uniform(0.3, 1.0, c) * s for c, s in zip(model.plan.prunable, map_sizes(model))]


def setup_model(tmp_path, net):
    torch.manual_seed(0)
    model = build_model(net, 6, width=0.125)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):  # non-trivial BatchNorms, so masking has to be right
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    base = tmp_path / "base.pth"
    save_model(model, base)
    save_ranks(realistic_ranks(model), tmp_path / "ranks")
    return model.eval(), base


def assert_pruned_equals_masked(model, out):
    pruned = load_model(out).eval()
    kept = read_sidecar(out)["kept_indices"]
    masked = masked_copy(model, kept).eval()
    x = torch.randn(1, 3, 300, 300)
    with torch.no_grad():
        for a, b in zip(pruned(x), masked(x)):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5)
    return pruned


@pytest.mark.parametrize("net", ["vgg16-ssd", "mb1-ssd"])
def test_prune_mac_budget(net, tmp_path, capsys):
    model, base = setup_model(tmp_path, net)
    out = tmp_path / "pruned.pth"
    assert main(["prune", "--net", net, "--base_net", str(base), "--rank_dir", str(tmp_path / "ranks"),
                 "--mac_budget", "0.5", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    full = int(count_exact(model)["MACs"].sum())
    pruned = assert_pruned_equals_masked(model, out)
    assert int(count_exact(pruned)["MACs"].sum()) <= 0.5 * full
    meta = read_sidecar(out)
    assert meta["widths"] == dict(zip(layer_names(net), pruned.plan.prunable))
    assert meta["budget"]["kind"] == "macs" and meta["budget"]["predicted"] <= meta["budget"]["budget"]
    assert f"{layer_names(net)[0]:<10} {model.plan.prunable[0]:>5} -> {pruned.plan.prunable[0]}" in printed
    assert "MACs: predicted" in printed
    if net == "mb1-ssd":  # each depthwise conv follows its producer's kept filters
        sd = pruned.state_dict()
        for b in range(1, 14):
            assert sd[f"base_net.{b}.0.weight"].shape[0] == pruned.plan.base[b - 1]


def test_min_keep_bounds_every_layer(tmp_path):
    from hrank_ssd.latency.budgets import widths_for_mac_budget

    model, _ = setup_model(tmp_path, "vgg16-ssd")
    free = widths_for_mac_budget(model, Budget(0.5, True), tmp_path / "ranks")
    bound = widths_for_mac_budget(model, Budget(0.5, True), tmp_path / "ranks", min_keep=0.5)
    assert all(k >= 0.5 * c for k, c in zip(bound.widths, bound.channels))
    assert bound.predicted <= bound.budget and bound.importance <= free.importance
    with pytest.raises(HRankError, match="below the smallest possible cost"):
        widths_for_mac_budget(model, Budget(0.2, True), tmp_path / "ranks", min_keep=0.9)


def latency_table(model, path):
    """A hand-made table on this machine: one unit per layer, ms proportional to its inputs x filters."""
    from hrank_ssd.latency.table import LatencyTable, UnitTimes, current_machine

    counts = [grid_counts(c, 4) for c in model.plan.prunable]
    units = [UnitTimes(module=f"unit{i}", out_layer=i, in_layer=None if i == 0 else i - 1,
                       in_counts=[3] if i == 0 else counts[i - 1], out_counts=counts[i],
                       ms=[[1e-3 * a * b for b in counts[i]] for a in ([3] if i == 0 else counts[i - 1])])
             for i in range(len(counts))]
    table = LatencyTable(net=model.cfg.name, width=0.125, image_size=300, batch_size=1, device="cpu",
                         threads=torch.get_num_threads(), layout="contiguous", machine=current_machine("cpu"),
                         counts=counts, units=units, rest_ms=0.5, full_ms=0.0)
    table.full_ms = table.predict(table.full_widths())
    table.save(path)
    return table


def test_prune_latency_budget(tmp_path, capsys):
    model, base = setup_model(tmp_path, "vgg16-ssd")
    table = latency_table(model, tmp_path / "table.json")
    out = tmp_path / "pruned.pth"
    assert main(["prune", "--base_net", str(base), "--rank_dir", str(tmp_path / "ranks"), "--latency_budget", "0.6",
                 "--latency_table", str(tmp_path / "table.json"), "--min_keep", "0.25", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    pruned = assert_pruned_equals_masked(model, out)
    widths = pruned.plan.prunable
    assert all(k in grid and k >= 0.25 * grid[-1] for k, grid in zip(widths, table.counts))
    meta = read_sidecar(out)["budget"]
    assert meta["kind"] == "latency" and meta["budget"] == pytest.approx(0.6 * table.full_ms)
    assert meta["predicted"] == pytest.approx(table.predict(widths)) and meta["predicted"] <= meta["budget"]
    assert "latency: predicted" in printed and "measured" in printed
    assert main(["prune", "--base_net", str(base), "--rank_dir", str(tmp_path / "ranks"), "--latency_budget", "0.4ms",
                 "--latency_table", str(tmp_path / "table.json"), "--output", str(out)]) == 2
    assert "below the smallest possible cost" in capsys.readouterr().err


@pytest.mark.parametrize("latency", [None, "0.8"])
def test_prune_latency_table_with_a_mac_budget(latency, tmp_path, capsys):
    """--mac_budget with --latency_table: with --latency_budget both fit; alone, the fastest widths at the MACs."""
    model, base = setup_model(tmp_path, "vgg16-ssd")
    table = latency_table(model, tmp_path / "table.json")
    out = tmp_path / "pruned.pth"
    flags = [] if latency is None else ["--latency_budget", latency]
    assert main(["prune", "--base_net", str(base), "--rank_dir", str(tmp_path / "ranks"), "--mac_budget", "0.5",
                 "--latency_table", str(tmp_path / "table.json"), "--output", str(out)] + flags) == 0
    printed = capsys.readouterr().out
    pruned = assert_pruned_equals_masked(model, out)
    full, macs = int(count_exact(model)["MACs"].sum()), int(count_exact(pruned)["MACs"].sum())
    meta = read_sidecar(out)["budget"]
    assert macs <= 0.5 * full and meta["macs"] == macs and meta["mac_cap"] == pytest.approx(0.5 * full)
    assert meta["predicted"] <= meta["budget"] <= (table.full_ms if latency is None else 0.8 * table.full_ms)
    assert "latency: predicted" in printed and f"MACs: exact {macs / 1e9:.4f}G" in printed


def test_fastest_widths_at_mac_cap(tmp_path):
    from hrank_ssd.latency.budgets import fastest_widths_at_mac_cap, widths_for_latency_budget
    from hrank_ssd.measure.flops import macs
    from hrank_ssd.nets.compress import PRUNED_RATE

    model, _ = setup_model(tmp_path, "vgg16-ssd")
    table = latency_table(model, tmp_path / "table.json")
    ranks = tmp_path / "ranks"
    paper = [kept_channels(c, r) for c, r in zip(model.plan.prunable, PRUNED_RATE)]
    pruned, _ = prune_to_widths(model, paper, "hrank", ranks)
    cap = macs(model, paper)
    assert cap == int(count_exact(pruned)["MACs"].sum())  # exact, without building the pruned model
    most = widths_for_latency_budget(model, table, Budget(1.0, True), ranks, mac_cap=cap)  # the cap's importance
    assert most.macs == macs(model, most.widths) <= cap and most.sidecar()["mac_cap"] == cap
    for keep in (1.0, 0.9):
        got = fastest_widths_at_mac_cap(model, table, cap, ranks, keep=keep)
        assert got.kind == "latency" and got.macs == macs(model, got.widths) <= cap
        assert got.importance >= keep * most.importance - 1e-9 and got.predicted <= most.predicted + 1e-9
        assert got.choice.cost <= got.budget and got.predicted == pytest.approx(table.predict(got.widths))
        again = widths_for_latency_budget(model, table, Budget(got.budget, False), ranks, mac_cap=cap)
        assert again.widths == got.widths  # the budget found gives these widths
        lower = got.budget - 2e-3 * table.full_ms  # below the bracket: that budget keeps too little (or nothing)
        try:
            assert widths_for_latency_budget(model, table, Budget(lower, False), ranks,
                                             mac_cap=cap).importance < keep * most.importance
        except HRankError:
            pass
    assert got.predicted < most.predicted  # giving up a tenth of the importance buys time on this grid
    with pytest.raises(HRankError, match="no widths on the table's grid keep within") as err:
        fastest_widths_at_mac_cap(model, table, 1, ranks)
    assert "\n" not in str(err.value)


def test_latency_range_bounds_the_budgets_that_can_be_met(tmp_path):
    from hrank_ssd.latency.budgets import latency_range, widths_for_latency_budget

    model, _ = setup_model(tmp_path, "vgg16-ssd")
    table = latency_table(model, tmp_path / "table.json")
    ranks = tmp_path / "ranks"
    cheapest, full = latency_range(model, table, ranks, min_keep=0.25)
    assert full == table.full_ms and 0 < cheapest < full
    # the cheapest widths keeping a quarter of each layer: the smallest count of each grid at or above 25%
    smallest = [min(k for k in grid if k >= 0.25 * grid[-1]) for grid in table.counts]
    assert cheapest == pytest.approx(table.predict(smallest), rel=1e-12)
    assert latency_range(model, table, ranks)[0] < cheapest  # without min_keep, cheaper widths exist
    widths_for_latency_budget(model, table, Budget(cheapest + 0.1 * (full - cheapest), False), ranks, min_keep=0.25)
    with pytest.raises(HRankError, match="below the smallest possible cost"):
        widths_for_latency_budget(model, table, Budget(0.99 * cheapest, False), ranks, min_keep=0.25)


@pytest.mark.parametrize("flags, message", [
    ([], "prune needs --compress_rate"),
    (["--compress_rate", "[0.5]*14", "--mac_budget", "0.5"], "--compress_rate sets every layer's rate itself"),
    (["--compress_rate", "[0.5]*14", "--latency_table", "t.json"], "--compress_rate sets every layer's rate itself"),
    (["--latency_table", "t.json"], "prune needs --compress_rate"),
    (["--mac_budget", "0.5", "--latency_table", "t.json", "--keep_importance", "0"], "must lie in (0, 1]"),
    (["--mac_budget", "2"], "must lie in (0, 1]"),
    (["--mac_budget", "0"], "must lie in (0, 1]"),
    (["--mac_budget", "half"], "is not a budget"),
    (["--mac_budget", "10X"], "is not a budget"),
    (["--mac_budget", "1k"], "below the smallest possible cost"),
    (["--latency_budget", "5ms"], "--latency_budget needs --latency_table"),
    (["--latency_budget", "5s", "--latency_table", "t.json"], "is not a budget"),
    (["--mac_budget", "0.5", "--criterion", "l1"], "use --criterion hrank"),
    (["--mac_budget", "0.5", "--round_to", "8"], "--round_to applies to --compress_rate"),
])
def test_budget_flag_errors_are_one_line(flags, message, tmp_path, capsys):
    _, base = setup_model(tmp_path, "vgg16-ssd")
    code = main(["prune", "--base_net", str(base), "--rank_dir", str(tmp_path / "ranks"),
                 "--output", str(tmp_path / "x.pth")] + flags)
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
