"""Latency lookup tables: every unit of the slice rules timed on a grid, predictions that sum measured medians
(bilinear between grid counts), knapsack costs, a file that refuses another machine. No assertion reads a time:
the numbers are checked against each other and against hand-made tables."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import itertools
import math
import statistics

import numpy as np
import pytest
import torch
from support.fake_clock import conv_clock
from torch import nn

from hrank_ssd.cli import main
from hrank_ssd.errors import HRankError
from hrank_ssd.latency import measure as latency_measure
from hrank_ssd.latency import table as lt
from hrank_ssd.latency.measure import design_widths, find_units, first_filters, measure_latency_table
from hrank_ssd.latency.table import LatencyTable, UnitTimes, current_machine, grid_counts, hardware_block
from hrank_ssd.nets.models import build_model
from hrank_ssd.nets.registry import get_net
from hrank_ssd.nets.ssd import kept_channels

NETS = ("vgg16-ssd", "mb1-ssd")
FAST = ["--width", "0.125", "--image_size", "300", "--grid", "3", "--runs", "1", "--warmup", "0", "--rounds", "1",
        "--no_progress"]


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """Each net's table measured through the CLI at a tiny width: net -> (path, what the command printed)."""
    out = {}
    for net in NETS:
        path = tmp_path_factory.mktemp("latency") / f"{net}.json"
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            assert main(["latency-table", "--net", net, *FAST, "--out", str(path)]) == 0
        out[net] = (path, printed.getvalue())
    return out


def _model(net):
    return build_model(net, 21, width=0.125, image_size=300)


# ---------------------------------------------------------------- measured tables


@pytest.mark.parametrize("net", NETS)
def test_cli_end_to_end(measured, net):
    path, printed = measured[net]
    table = LatencyTable.load(path)
    assert (table.net, table.width, table.image_size, table.runs, table.warmup) == (net, 0.125, 300, 1, 0)
    assert "full: predicted" in printed and "measured" in printed and f"wrote {path}" in printed
    assert [c["name"] for c in table.checks][0] == "full" and len(table.checks) == 2
    assert [c["widths"] for c in table.checks] == list(latency_measure.default_checks(net, 0.125).values())
    for check in table.checks:
        assert check["predicted_ms"] == table.predict(check["widths"])
        assert check["forwards"] == latency_measure.CHECK_COPIES * table.runs  # each copy's runs, all kept
        assert f"{check['forwards']} forwards among the table's" in printed
    assert table.models == len(design_widths(table.counts)) + 2 * latency_measure.CHECK_COPIES


def test_check_models_are_timed_among_the_table_and_bad_ones_refused():
    full = _model("vgg16-ssd").plan.prunable
    odd = [max(1, c // 3) for c in full]  # counts off the grid: predicted by interpolation
    table = measure_latency_table("vgg16-ssd", width=0.125, grid=2, runs=2, warmup=0, progress=False,
                                  checks={"third": odd}, check_copies=3, rounds=2)
    (check,) = table.checks
    assert (check["name"], check["widths"], check["forwards"]) == ("third", odd, 2 * 3 * 2)  # runs, copies, rounds
    assert check["predicted_ms"] == table.predict(odd) and check["measured_ms"] > 0
    assert table.models == len(design_widths(table.counts)) + 3 and table.rounds == 2
    assert LatencyTable.from_dict({"format": lt.FORMAT, "version": lt.VERSION, **dataclasses.asdict(table)}).rounds == 2
    for widths in (odd[:-1], [0] + odd[1:], [full[0] + 1] + odd[1:]):
        with pytest.raises(HRankError, match="check model 'bad' keeps .*one count per prunable layer"):
            measure_latency_table("vgg16-ssd", width=0.125, grid=2, runs=1, warmup=0, progress=False,
                                  checks={"bad": widths})
    for rounds, copies in ((0, 1), (1, 0)):
        with pytest.raises(HRankError, match="--rounds and the check copies must be at least 1"):
            measure_latency_table("vgg16-ssd", width=0.125, grid=2, runs=1, progress=False, checks={"a": odd},
                                  rounds=rounds, check_copies=copies)


def test_rounds_time_every_model_once_per_round_each_in_a_new_order(monkeypatch):
    seen = []
    real = latency_measure.Timings.time_chunk

    def spy(self, models, *args):
        seen.append([tuple(w) for w, _, _ in models])
        return real(self, models, *args)

    monkeypatch.setattr(latency_measure.Timings, "time_chunk", spy)
    table = measure_latency_table("vgg16-ssd", width=0.125, grid=2, runs=1, warmup=0, progress=False, rounds=3)
    order = [w for chunk in seen for w in chunk]
    design = sorted(tuple(w) for w in design_widths(table.counts))
    n = len(design)
    rounds = [order[i * n:(i + 1) * n] for i in range(3)]
    assert len(order) == 3 * n and all(sorted(r) == design for r in rounds)
    assert len({tuple(r) for r in rounds}) == 3  # three different orders


@pytest.mark.parametrize("net", NETS)
def test_table_covers_every_layer_and_every_rule_conv(measured, net):
    table = LatencyTable.load(measured[net][0])
    spec, model = get_net(net), _model(net)
    named = dict(model.named_modules())
    assert len(table.counts) == spec.num_prunable
    assert [grid[-1] for grid in table.counts] == model.plan.prunable
    timed = {name for u in table.units for name in u.modules}
    rules = spec.slice_rules()
    assert {n for n in rules if isinstance(named[n], nn.Conv2d)} == {u.module for u in table.units
                                                                     if isinstance(named[u.module], nn.Conv2d)}
    assert {n for n in rules if isinstance(named[n], (nn.Conv2d, nn.BatchNorm2d))} <= timed
    for u in table.units:
        assert (u.out_layer, u.in_layer) == rules[u.module]
        assert len(u.ms) == len(u.in_counts) and all(len(r) == len(u.out_counts) for r in u.ms)
        assert all(isinstance(v, float) and v >= 0 for r in u.ms for v in r)
    layers = {u.out_layer for u in table.units} | {u.in_layer for u in table.units}
    assert set(range(spec.num_prunable)) <= layers


def test_grid_has_full_counts_block_multiples_and_the_paper_rates_counts(measured):
    table = LatencyTable.load(measured["vgg16-ssd"][0])
    rates = get_net("vgg16-ssd").default_compress_rate
    assert table.block == hardware_block("cpu")
    for grid, rate in zip(table.counts, rates):
        full = grid[-1]
        assert kept_channels(full, rate) in grid and full in grid
        if full > table.block:
            assert any(c % table.block == 0 and c < full for c in grid)


def test_grid_counts_by_hand():
    counts = grid_counts(512, points=8, block=16, exact=[256, 461])
    assert counts == sorted(set(counts)) and counts[0] >= 1 and counts[-1] == 512
    assert {51, 48, 64, 256, 461, 512} <= set(counts)  # 10% of 512, the blocks around it, the exact counts
    for j in range(8):
        p = round((0.1 + 0.9 * j / 7) * 512)
        assert {p, p // 16 * 16, -(-p // 16) * 16} <= set(counts) | {0}
    assert grid_counts(8, points=3, block=16) == [1, 4, 8]  # a block past the layer adds nothing
    assert grid_counts(64, points=1, block=8) == [64]


def test_hardware_block(monkeypatch):
    monkeypatch.setattr(lt, "cpu_flags", lambda: {"avx2", "fma"})
    assert hardware_block("cpu") == 8
    monkeypatch.setattr(lt, "cpu_flags", lambda: {"avx2", "avx512f"})
    assert hardware_block("cpu") == 16
    assert hardware_block(torch.device("cuda")) == 32  # no GPU needed to know a warp


@pytest.mark.parametrize("net", NETS)
def test_predict_at_full_width_sums_measured_medians(measured, net):
    table = LatencyTable.load(measured[net][0])
    full = table.full_widths()
    assert table.predict(full) == math.fsum([table.rest_ms] + [u.ms[-1][-1] for u in table.units])
    assert table.predict(full) == pytest.approx(table.full_ms, rel=1e-12, abs=1e-12)
    costs = table.costs()
    assert costs.total([len(g) - 1 for g in table.counts]) == pytest.approx(table.predict(full), rel=1e-12)
    pruned = [kept_channels(g[-1], 0.5) for g in table.counts]  # between grid counts: interpolated, no error
    assert math.isfinite(table.predict(pruned))


def test_units_of_mb1_and_vgg():
    units = find_units(_model("mb1-ssd"), get_net("mb1-ssd").slice_rules())
    dw = [u for u in units if u.names[0] == "base_net.2.0"][0]
    assert dw.names == ["base_net.2.0", "base_net.2.1", "base_net.2.2"]
    assert dw.module.groups == dw.module.in_channels  # depthwise: its input side follows its filters
    assert dw.in_layer is None and dw.cell([5] * 14, dw.full_counts()) == (dw.full_counts()[0], 5)
    named = dict(_model("vgg16-ssd").named_modules())
    vgg = find_units(_model("vgg16-ssd"), get_net("vgg16-ssd").slice_rules())
    assert len(vgg) == 15 + 1 + 2  # the backbone convs, the conv4_3 BatchNorm add-on, header 0's two convs
    conv1_2 = [u for u in vgg if u.names[0] == "base_net.2"][0]
    assert [type(named[n]) for n in conv1_2.names] == [nn.Conv2d, nn.ReLU, nn.MaxPool2d]  # the pool on its output
    assert conv1_2.cell(list(range(1, 15)), conv1_2.full_counts()) == (1, 2)


def test_design_meets_every_cell_of_adjacent_layers():
    counts = [[1, 2], [3, 4, 5], [6], [7, 8, 9, 10]]
    design = design_widths(counts)
    # even layers take 2 distinct vectors over p, odd layers 4 over q: 8 models, duplicates dropped
    assert len(design) == len({tuple(w) for w in design}) == 2 * 4
    for i in range(1, len(counts)):
        met = {(w[i - 1], w[i]) for w in design}
        assert met == set(itertools.product(counts[i - 1], counts[i])), i
    assert [g[-1] for g in counts] in design


@pytest.mark.parametrize("net", NETS)
def test_in_model_segments_price_every_model_exactly(monkeypatch, net):
    """A fake clock that only convs advance (by in x out channels): the table's sum then equals a model's time
    exactly at any grid widths, which holds only if each segment is charged to the right unit and cell."""
    with conv_clock(monkeypatch) as clock:
        table = measure_latency_table(net, width=0.125, image_size=300, grid=2, runs=1, warmup=0, progress=False)
        base = build_model(net, 21, width=0.125, image_size=300).eval()
        rng = np.random.default_rng(0)
        for _ in range(4):
            widths = [int(rng.choice(g)) for g in table.counts]
            model = first_filters(base, widths)
            before = clock[0]
            with torch.inference_mode():
                model(torch.zeros(1, 3, 300, 300))
            assert table.predict(widths) == pytest.approx((clock[0] - before) * 1e3, rel=1e-9, abs=1e-9)


def test_rest_is_every_forwards_time_before_its_first_unit(monkeypatch):
    """``rest_ms`` (what a forward runs before its first unit) is the median over all the design's forwards: a fake
    clock spends 2 ms there in every model but 9 ms in the full one; the rest stays 2 ms, not the full model's 9."""
    clock = [0.0]
    base = build_model("vgg16-ssd", 21, width=0.125, image_size=300).eval()

    def before_first_unit(module, inputs):
        if isinstance(module, type(base)):
            clock[0] += 9e-3 if module.plan.prunable == base.plan.prunable else 2e-3

    monkeypatch.setattr(latency_measure.time, "perf_counter", lambda: clock[0])
    handle = torch.nn.modules.module.register_module_forward_pre_hook(before_first_unit)
    try:
        table = measure_latency_table("vgg16-ssd", width=0.125, grid=3, runs=1, warmup=0, progress=False,
                                      drift_reference=False)
    finally:
        handle.remove()
    assert len(design_widths(table.counts)) > 3 and table.rest_ms == pytest.approx(2.0, rel=1e-9)
    assert all(u.ms[-1][-1] == 0 for u in table.units)  # the clock moves before the first unit only
    assert table.full_ms == table.predict(table.full_widths()) == pytest.approx(2.0, rel=1e-9)


def test_drift_reference_takes_the_machines_speed_out_of_the_cells(monkeypatch):
    """The fake conv clock again, but each chunk of models runs at its own speed (1x, 1.5x, 3x in turn), as on a
    VM whose neighbours come and go: with the drift reference every cell is its cost at the reference's median
    speed, so the table prices any model exactly at that speed and says how far the speed moved; a check model's
    forwards stay as measured. Without the reference the same cells mix the speeds and some model is mispriced."""
    speed, speeds = [1.0], []
    real = latency_measure.Timings.time_chunk

    def at_its_speed(self, models, *args):
        speed[0] = (1.0, 1.5, 3.0)[len(speeds) % 3]
        speeds.append(speed[0])
        return real(self, models, *args)

    monkeypatch.setattr(latency_measure.Timings, "time_chunk", at_its_speed)
    base = build_model("vgg16-ssd", 21, width=0.125, image_size=300).eval()
    full = base.plan.prunable
    with conv_clock(monkeypatch, speed) as clock:
        tables = {}
        for reference in (False, True):
            speeds.clear()
            tables[reference] = measure_latency_table("vgg16-ssd", width=0.125, grid=2, runs=1, warmup=0,
                                                      progress=False, checks={"full": full}, check_copies=1,
                                                      drift_reference=reference)
        median_speed = statistics.median(speeds)  # one reference forward per chunk, at the chunk's speed
        rng = np.random.default_rng(0)
        speed[0], errors = 1.0, []
        for widths in [full] + [[int(rng.choice(g)) for g in tables[True].counts] for _ in range(4)]:
            before = clock[0]
            with torch.inference_mode():
                first_filters(base, widths)(torch.zeros(1, 3, 300, 300))
            cost = (clock[0] - before) * 1e3
            assert tables[True].predict(widths) == pytest.approx(median_speed * cost, rel=1e-9)
            errors.append(abs(tables[False].predict(widths) / (median_speed * cost) - 1))
    assert len(set(speeds)) == 3 and max(errors) > 0.01
    drift = tables[True].drift
    assert drift["chunks"] == len(speeds)
    assert (drift["min"], drift["max"]) == pytest.approx((1.0 / median_speed, 3.0 / median_speed), rel=1e-12)
    assert tables[False].drift is None
    (check,) = tables[True].checks  # timed in one chunk: as measured, at that chunk's speed
    ratio = check["measured_ms"] / tables[True].predict(full)
    assert any(ratio == pytest.approx(s / median_speed, rel=1e-9) for s in (1.0, 1.5, 3.0)), ratio


# ---------------------------------------------------------------- a hand-made table


def _bilinear(k_in, k_out):
    return 1.0 + 0.5 * k_in * k_out  # bilinear interpolation reproduces a + b x + c y + d x y exactly


def _handmade(**kw) -> LatencyTable:
    counts = [[2, 4], [1, 3, 5]]
    units = [
        UnitTimes("a", 0, None, [3], [2, 4], [[1.0, 2.0]]),
        UnitTimes("b", 1, 0, [2, 4], [1, 3, 5], [[_bilinear(i, o) for o in (1, 3, 5)] for i in (2, 4)]),
        UnitTimes("head", None, 1, [1, 3, 5], [7], [[0.25], [0.5], [1.0]]),
        UnitTimes("bn", 1, None, [5], [1, 3, 5], [[0.125, 0.25, 0.375]]),
    ]
    fields = dict(net="vgg16-ssd", width=1.0, image_size=300, batch_size=1, device="cpu",
                  threads=torch.get_num_threads(), layout="contiguous", machine=current_machine("cpu"),
                  counts=counts, units=units, rest_ms=10.0, full_ms=10.0 + 2.0 + _bilinear(4, 5) + 1.0 + 0.375)
    fields.update(kw)
    return LatencyTable(**fields)


def test_handmade_predict_is_bilinear_and_clamped():
    t = _handmade()
    assert t.predict([4, 5]) == t.full_ms == t.predict(t.full_widths())
    assert t.predict([4, 3]) == math.fsum([10.0, 2.0, _bilinear(4, 3), 0.5, 0.25])  # a grid point: no arithmetic
    # between grid counts: a at 3 -> 1.5; b bilinear exact; head and bn linear between 1 and 3
    assert t.predict([3, 2]) == pytest.approx(10.0 + 1.5 + _bilinear(3, 2) + 0.375 + 0.1875, rel=1e-15)
    assert t.predict([2.5, 4.5]) == pytest.approx(10 + 1.25 + _bilinear(2.5, 4.5) + 0.875 + 0.34375, rel=1e-15)
    assert t.predict([1, 9]) == t.predict([2, 5])  # clamped to the grid's ends
    with pytest.raises(HRankError):
        t.predict([4])


def test_off_block_counts_cost_their_rounded_up_count_and_their_units_surcharge():
    """The one off-grid rule: a count off the grid and off the block costs its count rounded up to the block (the
    kernels pad to it), times 1 + the unit's own median surcharge of its off-block cells over their rounded-up
    neighbours, per side; grid counts and block multiples are priced as measured or interpolated."""
    plain, blocked = _handmade(), _handmade(block=2)
    assert blocked.predict([3, 2]) == plain.predict([4, 2])  # 3 -> 4; no off-block grid cell: no surcharge
    assert blocked.predict([4, 3]) == plain.predict([4, 3])  # grid counts stay
    assert _handmade(block=4).predict([2, 4.5]) == plain.predict([2, 5])  # 4.5 -> 8, clamped to the full 5
    grid = [16, 20, 32, 48]  # block 16: the cell at 20 against 32 is each unit's evidence
    units = [UnitTimes("a", 0, None, [3], grid, [[1.0, 2.2, 2.0, 3.0]]),  # output side: 2.2 / 2.0 -> +10%
             UnitTimes("b", None, 0, grid, [7], [[1.0], [1.5], [1.0], [2.0]])]  # input side: 1.5 / 1.0 -> +50%
    t = _handmade(block=16, counts=[grid], units=units, full_ms=15.0)
    assert lt.surcharge(grid, units[0].ms, 16) == pytest.approx(0.1)
    assert lt.surcharge(grid, [[1.0, 1.5, 1.0, 2.0]], 16) == 0.5
    assert t.predict([24]) == pytest.approx(10.0 + 2.0 * 1.1 + 1.0 * 1.5, rel=1e-15)  # 24 -> 32, plus each surcharge
    assert t.predict([40]) == pytest.approx(10.0 + 3.0 * 1.1 + 2.0 * 1.5, rel=1e-15)  # 40 -> 48
    assert t.predict([20]) == 10.0 + 2.2 + 1.5 and t.predict([48]) == 15.0  # grid counts as measured
    wide = [16, 20, 32, 64]
    on_block = _handmade(block=16, counts=[wide], full_ms=14.0,
                         units=[UnitTimes("a", 0, None, [3], wide, [[1.0, 2.2, 2.0, 4.0]])])
    assert on_block.predict([48]) == 10.0 + 3.0  # a block multiple off the grid: between 32 and 64, no surcharge
    assert _handmade(block=None).predict([3, 2]) == plain.predict([3, 2])  # no block recorded: interpolated


def test_handmade_costs_equal_predict_on_the_grid():
    t = _handmade()
    c = t.costs()
    assert c.constant == 10.0 and c.pairwise[0] is None
    np.testing.assert_array_equal(c.unary[0], [1.0, 2.0])
    np.testing.assert_array_equal(c.unary[1], [0.375, 0.75, 1.375])
    np.testing.assert_array_equal(c.pairwise[1], [[_bilinear(i, o) for o in (1, 3, 5)] for i in (2, 4)])
    for a, b in itertools.product(range(2), range(3)):
        assert c.total([a, b]) == pytest.approx(t.predict([t.counts[0][a], t.counts[1][b]]), rel=1e-15)


def test_costs_transpose_a_reversed_pair_and_refuse_distant_layers():
    rev = UnitTimes("rev", 0, 1, [1, 3, 5], [2, 4], [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    same = UnitTimes("same", 1, 1, [1, 3, 5], [1, 3, 5], np.arange(9.0).reshape(3, 3).tolist())
    c = _handmade(units=[rev, same]).costs()
    np.testing.assert_array_equal(c.pairwise[1], [[1.0, 3.0, 5.0], [2.0, 4.0, 6.0]])
    np.testing.assert_array_equal(c.unary[1], [0.0, 4.0, 8.0])
    far = UnitTimes("far", 2, 0, [2, 4], [1, 2], [[1.0, 2.0], [3.0, 4.0]])
    t = _handmade(counts=[[2, 4], [1, 3, 5], [1, 2]], units=[far])
    assert t.predict([4, 5, 2]) == 14.0
    with pytest.raises(HRankError, match="not adjacent"):
        t.costs()


# ---------------------------------------------------------------- the file


def test_json_round_trip(tmp_path, measured):
    t = _handmade(checks=[{"name": "full", "widths": [4, 5], "predicted_ms": 1.5, "measured_ms": 2.5}])
    assert LatencyTable.load(t.save(tmp_path / "t.json")) == t
    real = LatencyTable.load(measured["mb1-ssd"][0])
    assert LatencyTable.load(real.save(tmp_path / "real.json")) == real


def test_another_machines_table_is_refused_unless_asked(tmp_path):
    other = _handmade(machine={**current_machine("cpu"), "cpu": "Some Other CPU", "torch": "0.1"})
    path = other.save(tmp_path / "other.json")
    with pytest.raises(HRankError) as err:
        LatencyTable.load(path)
    text = str(err.value)
    assert "\n" not in text and "Some Other CPU" in text and "latency-table --net vgg16-ssd" in text
    with pytest.warns(UserWarning, match="measured elsewhere"):
        assert LatencyTable.load(path, expect_machine=False) == other
    threads = _handmade(threads=torch.get_num_threads() + 1).save(tmp_path / "threads.json")
    with pytest.raises(HRankError, match="threads"):
        LatencyTable.load(threads)
    assert LatencyTable.load(threads, threads=torch.get_num_threads() + 1).threads == torch.get_num_threads() + 1


@pytest.mark.parametrize("text", ["{not json", "[]", '{"format": "something else", "version": 1}', "",
                                  "BROKEN_MS"])
def test_damaged_file_is_one_line_error(tmp_path, text):
    path = tmp_path / "bad.json"
    if text == "BROKEN_MS":
        _handmade().save(path)
        text = path.read_text().replace('"ms": [[1.0, 2.0]]', '"ms": [[1.0]]')
        assert '"ms": [[1.0]]' in text
    path.write_text(text)
    with pytest.raises(HRankError) as err:
        LatencyTable.load(path)
    assert "\n" not in str(err.value) and "latency-table" in str(err.value)
    with pytest.raises(HRankError, match="does not exist"):
        LatencyTable.load(tmp_path / "missing.json")


@pytest.mark.parametrize("argv", [["--net", "no-such-net"], ["--net", "mb1-ssd", "--grid", "0"],
                                  ["--net", "mb1-ssd", "--runs", "0"], ["--net", "mb1-ssd", "--device", "tpu"]])
def test_cli_bad_input_exits_2_with_one_line(tmp_path, capsys, argv):
    assert main(["latency-table", *argv, "--out", str(tmp_path / "t.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert not (tmp_path / "t.json").exists()
