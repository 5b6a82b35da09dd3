"""Course bookkeeping: the device is resolved once, published artifacts are fetched and verified once; the
comparison's extra models (the latency table per machine, the latency-pruned VGG16-SSDs, the pruned MobileNetV1-SSD)."""

import pandas as pd
import pytest
import torch

from hrank_ssd.errors import HRankError


def test_course_resolves_its_device_once(tmp_path):
    from hrank_ssd.course.steps import Course

    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert Course("tiny", tmp_path / "run", tmp_path / "work", progress=False).device == expected
    with pytest.raises(HRankError, match="unknown --device 'gpu'"):
        Course("tiny", tmp_path / "run", tmp_path / "work", device="gpu", progress=False)


def test_course_fetches_each_artifact_once(tmp_path, monkeypatch):
    from hrank_ssd.course.steps import Course
    from hrank_ssd.io import downloads

    calls = []
    monkeypatch.setattr(downloads, "fetch", lambda name, **kw: calls.append(name) or tmp_path / f"{name}.pth")
    course = Course("full", tmp_path / "run", tmp_path / "work", progress=False)
    assert course.baseline("vgg16-ssd") == course.baseline("vgg16-ssd") == tmp_path / "vgg16-ssd.pth"
    assert calls == ["vgg16-ssd"]  # verified (sha256 of the whole file) once, not at every use


def test_full_profile_uses_the_published_ranks_unless_asked_to_generate(tmp_path, monkeypatch):
    from hrank_ssd.course.steps import Course
    from hrank_ssd.hrank.ranks import has_ranks
    from hrank_ssd.io import downloads

    calls = []
    monkeypatch.setattr(downloads, "fetch", lambda name, **kw: calls.append(name) or tmp_path / name)
    course = Course("full", tmp_path / "run", tmp_path / "work", progress=False)
    assert course.rank_dir() == tmp_path / "vgg16-ssd-ranks" and calls == ["vgg16-ssd-ranks"]
    (course.work / "ranks").mkdir(parents=True)
    for i in range(1, 14):  # an interrupted run of the student's: one file short, so computed again...
        (course.work / "ranks" / f"rank_conv{i}.npy").write_bytes(b"")
    assert not has_ranks(course.work / "ranks", "vgg16-ssd")
    (course.work / "ranks" / "rank_conv14.npy").write_bytes(b"")  # ...but complete, it is reused
    assert course.rank_dir(generate=True) == course.work / "ranks"
    assert course.rank_dir() == tmp_path / "vgg16-ssd-ranks"  # the default stays the published folder


def test_student_finetune_is_short_on_full_and_the_course_run_elsewhere(tmp_path, monkeypatch):
    from hrank_ssd.course.profiles import PROFILES
    from hrank_ssd.course.steps import Course

    short = PROFILES["full"].student_finetune_epochs
    for name, expected in (("full", {"epochs": short, "hooks": None, "init": None}),  # init: no choice made
                           ("tiny", {"epochs": PROFILES["tiny"].finetune_epochs, "hooks": None, "init": None})):
        course = Course(name, tmp_path / name / "run", tmp_path / name / "work", progress=False)
        seen = []
        monkeypatch.setattr(course, "finetune_rate", lambda rate, epochs, seen=seen, **kw: seen.append(
            dict(kw, epochs=epochs)) or tmp_path / "vgg16-ssd-pruned-x-ft1.pth")
        assert course.finetune_choice().name == "vgg16-ssd-pruned-x-ft1.pth" and seen == [expected]
        assert course.log_file(tmp_path / "x" / "vgg16-ssd-pruned-x-ft1.pth") == \
            course.results / "log_vgg16-ssd-pruned-x-ft1.csv"


def test_street_clip_comes_from_the_manifest_on_full_and_falls_back(tmp_path, monkeypatch):
    import hashlib
    import json

    from hrank_ssd.course import measures
    from hrank_ssd.course.steps import Course

    clip = tmp_path / "served" / "vtest.mp4"
    clip.parent.mkdir()
    clip.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40)
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"artifacts": [{
        "name": "street-clip", "file": "data/video/vtest.mp4", "kind": "video", "size": clip.stat().st_size,
        "sha256": hashlib.sha256(clip.read_bytes()).hexdigest(),
        "sources": [{"type": "http", "url": clip.as_uri()}]}]}))
    monkeypatch.setenv("HRANK_SSD_MANIFEST", str(manifest))
    monkeypatch.setattr(measures, "SHARED_VIDEO", ("no", "such", "clip.mp4"))
    full = Course("full", tmp_path / "run", tmp_path / "work", progress=False)
    got, source = measures.street_clip(full)
    assert source == "real clip (manifest: street-clip)" and got.read_bytes() == clip.read_bytes()
    assert measures.street_clip(Course("tiny", tmp_path / "r2", tmp_path / "w2", progress=False)) == (None, None)
    clip.write_bytes(b"corrupt")  # a download that fails its checksum is never used
    fresh = Course("full", tmp_path / "run3", tmp_path / "work3", progress=False)
    assert measures.street_clip(fresh) == (None, None)


def test_full_profile_downloads_only_the_voc_set_it_uses_into_work(tmp_path, monkeypatch):
    from hrank_ssd.course.steps import Course
    from hrank_ssd.io import voc_download

    calls = []
    monkeypatch.setattr(voc_download, "download_voc", lambda dest, sets, **kw: calls.append((dest, sets)))
    course = Course("full", tmp_path / "run", tmp_path / "work", progress=False)
    data = tmp_path / "work" / "full" / "data"
    assert course.test_root() == data / "VOCdevkit" / "VOC2007-test"
    assert calls == [(data, ("2007-test",))]
    assert course.dataset_root() == course.dataset_root() == data / "VOCdevkit" / "VOC2007"
    assert course.test_root() == data / "VOCdevkit" / "VOC2007-test"
    assert calls == [(data, ("2007-test",)), (data, ("2007-trainval",))]  # once each per run; never VOC2012


def test_published_pruned_model_over_quota_falls_back_to_the_students(tmp_path, monkeypatch):
    import json

    from hrank_ssd.course.steps import Course
    from hrank_ssd.io import downloads

    def fetch(name, **kw):
        if name == "vgg16-ssd-hrank":
            raise HRankError("vgg16-ssd-hrank: Google Drive says the file is over its download quota")
        return tmp_path / f"{name}.pth"

    monkeypatch.setattr(downloads, "fetch", fetch)
    course = Course("full", tmp_path / "run", tmp_path / "work", progress=False)
    monkeypatch.setattr(course, "finetune_choice", lambda: tmp_path / "vgg16-ssd-pruned-x-ft1.pth")
    assert course.model("vgg16-ssd-pruned") == tmp_path / "vgg16-ssd-pruned-x-ft1.pth"
    assert course.model("vgg16-ssd") == tmp_path / "vgg16-ssd.pth"
    note = json.loads((course.results / "substitutes.json").read_text())["vgg16-ssd-pruned"]
    assert "over its download quota" in note and "your own finetuned pruned model" in note
    assert f"({course.profile.student_finetune_epochs} epoch(s)" in note
    tiny = Course("tiny", tmp_path / "r2", tmp_path / "w2", progress=False)
    monkeypatch.setattr(tiny, "finetune_rate", lambda: (_ for _ in ()).throw(HRankError("broken")))
    with pytest.raises(HRankError, match="broken"):  # only the published model has a stand-in
        tiny.model("vgg16-ssd-pruned")


# ---------------------------------------------------------------- the comparison's extra models


CLASSES = ["BACKGROUND", "circle", "square", "triangle", "cross", "ring"]


def hand_made_table(net="vgg16-ssd", width=0.125, slope=1e-3, const=0.0):
    """A latency table on this machine, no timing: one unit per layer, ms = const + slope x its inputs x filters
    (``slope`` < 0: times falling as counts grow, what a table measured on a busy machine can look like)."""
    from hrank_ssd.latency.table import LatencyTable, UnitTimes, current_machine, grid_counts
    from hrank_ssd.nets.models import build_model

    counts = [grid_counts(c, 4) for c in build_model(net, 6, width=width).plan.prunable]
    units = [UnitTimes(module=f"unit{i}", out_layer=i, in_layer=None if i == 0 else i - 1,
                       in_counts=[3] if i == 0 else counts[i - 1], out_counts=counts[i],
                       ms=[[const + slope * a * b for b in counts[i]] for a in ([3] if i == 0 else counts[i - 1])])
             for i in range(len(counts))]
    table = LatencyTable(net=net, width=width, image_size=300, batch_size=1, device="cpu",
                         threads=torch.get_num_threads(), layout="contiguous", machine=current_machine("cpu"),
                         counts=counts, units=units, rest_ms=0.5, full_ms=0.0, num_classes=6)
    table.full_ms = table.predict(table.full_widths())
    return table


def course_with_baselines(tmp_path, monkeypatch, slope=1e-3, const=0.0, profile="tiny"):
    """A tiny course whose baselines and VGG ranks exist already (random weights, realistic ranks) and whose
    latency table is hand-made: no training, no timing. Returns (course, calls to measure_latency_table)."""
    import numpy as np

    from hrank_ssd.course import latency_models
    from hrank_ssd.course.steps import Course
    from hrank_ssd.hrank.ranks import save_ranks
    from hrank_ssd.latency.budgets import map_sizes
    from hrank_ssd.nets.models import build_model, save_model

    calls = []
    monkeypatch.setattr(latency_models, "measure_latency_table",
                        lambda net, **kw: calls.append(kw) or hand_made_table(net, kw["width"], slope, const))
    course = Course(profile, tmp_path / "run", tmp_path / "work", device="cpu", progress=False)
    monkeypatch.setattr(course, "class_names", lambda: CLASSES)
    torch.manual_seed(0)
    for net, width in (("vgg16-ssd", course.profile.vgg_width), ("mb1-ssd", course.profile.mb1_width)):
        save_model(build_model(net, 6, width=width), course.path(net))
    vgg = build_model("vgg16-ssd", 6, width=course.profile.vgg_width)
    rng = np.random.default_rng(0)
    save_ranks([rng.uniform(0.3, 1.0, c) * s for c, s in zip(vgg.plan.prunable, map_sizes(vgg))], course.work / "ranks")
    return course, calls


def test_latency_table_is_measured_once_per_machine_and_profile(tmp_path, monkeypatch):
    import json

    from hrank_ssd.course.latency_models import latency_table_path
    from hrank_ssd.course.profiles import get_profile
    from hrank_ssd.course.steps import Course

    course, calls = course_with_baselines(tmp_path, monkeypatch)
    table = course.latency_table()
    p = course.profile
    assert len(calls) == 1 and calls[0]["width"] == p.vgg_width and calls[0]["image_size"] == p.image_size
    assert (calls[0]["grid"], calls[0]["runs"], calls[0]["warmup"]) == (2, 1, 0)  # the tiny profile's
    assert calls[0]["num_classes"] == len(CLASSES) and calls[0]["device"] == "cpu"
    path = latency_table_path(course)
    assert path.parent == course.work / "latency" and path.is_file()
    assert json.loads((course.results / "latency_table.json").read_text())["full_ms"] == table.full_ms
    again = Course("tiny", tmp_path / "run2", tmp_path / "work", device="cpu", progress=False)
    assert latency_table_path(again) == path and again.latency_table().full_ms == table.full_ms
    assert len(calls) == 1  # reused from the work folder
    data = json.loads(path.read_text())
    data["machine"]["cpu"] = "Another CPU"  # the same folder on another machine: LatencyTable.load refuses it
    path.write_text(json.dumps(data))
    monkeypatch.setattr(again, "class_names", lambda: CLASSES)
    again.table = None
    assert again.latency_table().machine["cpu"] != "Another CPU" and len(calls) == 2
    assert json.loads(path.read_text())["machine"]["cpu"] != "Another CPU"  # measured here, saved over it
    other = Course(get_profile("tiny", latency_grid=3), tmp_path / "run3", tmp_path / "work", progress=False)
    assert latency_table_path(other) != path  # other table settings, another file


def test_a_later_notebook_uses_the_table_that_chose_the_latency_widths(tmp_path, monkeypatch, capsys):
    """Notebook 04 on a new VM with the work folder on Drive: the table named in the latency-pruned models'
    sidecars, even one measured on another machine, never a re-measured one; without it, this machine's rule."""
    import json

    from hrank_ssd.course.latency_models import chosen_table_path, latency_pruned, latency_table_path
    from hrank_ssd.course.models import PAPER_MACS
    from hrank_ssd.course.steps import Course

    course, calls = course_with_baselines(tmp_path, monkeypatch)
    assert chosen_table_path(course) is None  # no latency-pruned model yet
    latency_pruned(course, PAPER_MACS)
    chosen = course.table_file
    assert chosen_table_path(course) == chosen == latency_table_path(course) and len(calls) == 1
    data = json.loads(chosen.read_text())
    data["machine"]["cpu"] = "The CPU of notebook 02's VM"
    chosen.write_text(json.dumps(data))
    later = Course("tiny", tmp_path / "run2", tmp_path / "work", device="cpu", progress=False)
    monkeypatch.setattr(later, "class_names", lambda: CLASSES)
    assert later.latency_table().machine["cpu"] == "The CPU of notebook 02's VM" and len(calls) == 1
    assert later.table_file == chosen and "measured on another machine" in capsys.readouterr().err
    chosen.unlink()  # the table is gone: this machine's own is measured (and named in what is pruned next)
    again = Course("tiny", tmp_path / "run3", tmp_path / "work", device="cpu", progress=False)
    monkeypatch.setattr(again, "class_names", lambda: CLASSES)
    assert chosen_table_path(again) is None and again.latency_table() is not None and len(calls) == 2
    assert again.table_file == latency_table_path(again)


def test_latency_pruned_models_meet_their_budgets(tmp_path, monkeypatch):
    from hrank_ssd.course.latency_models import latency_pruned, latency_table_path, latency_widths, min_keep
    from hrank_ssd.course.models import PAPER_MACS, SMALL
    from hrank_ssd.measure.flops import macs
    from hrank_ssd.nets.models import load_model, read_sidecar

    course, _ = course_with_baselines(tmp_path, monkeypatch)
    base = load_model(course.path("vgg16-ssd"))
    paper = load_model(course.prune()).plan.prunable
    cap = macs(base, paper)
    chosen, note = latency_widths(course, PAPER_MACS, base)
    assert note == "" and chosen.kind == "latency" and macs(base, chosen.widths) <= cap
    assert all(k >= 0.5 * c for k, c in zip(chosen.widths, chosen.channels))  # paper_macs_min_keep
    assert min_keep(course, PAPER_MACS) == 0.5 and min_keep(course, SMALL) == 0.25
    small, note = latency_widths(course, SMALL, base)
    assert note == "" and small.predicted <= course.profile.latency_budget * course.latency_table().full_ms
    init = latency_pruned(course, PAPER_MACS)
    meta = read_sidecar(init)
    assert load_model(init).plan.prunable == chosen.widths and meta["compress_rate"] is None
    assert meta["budget"]["min_keep"] == 0.5 and meta["budget"]["latency_table"] == latency_table_path(course).name
    rows = course.latency_models().set_index("pruning")
    assert list(rows.index) == ["vgg16-ssd", "vgg16-ssd-pruned", PAPER_MACS, SMALL]
    assert rows.loc["vgg16-ssd-pruned", "MMACs"] == cap / 1e6 and rows.loc["vgg16-ssd", "of unpruned MACs"] == 1.0
    assert rows.loc[PAPER_MACS, "chosen by"] == "latency knapsack" and rows.loc[PAPER_MACS, "budget unit"] == "ms"
    assert rows.loc[SMALL, "predicted ms"] == small.predicted and (course.results / "latency_models.csv").is_file()
    slider = course.budget_table(0.6).set_index("pruning")
    assert list(slider.index) == ["unpruned", "paper rate [0.1]*7+[0.5]*9", "latency budget 0.6"]
    assert slider.iloc[1]["MMACs"] == cap / 1e6 and list(slider.iloc[1][-14:]) == list(paper)
    assert slider.iloc[2]["predicted ms"] <= 0.6 * course.latency_table().full_ms
    too_small = course.budget_table(0.01).set_index("pruning").loc["latency budget 0.01"]
    assert "the least budget that can be met is about" in too_small["note"] and pd.isna(too_small["MMACs"])


def test_a_table_whose_times_fall_with_the_counts_falls_back_to_the_mac_knapsack(tmp_path, monkeypatch):
    from hrank_ssd.course.latency_models import latency_widths
    from hrank_ssd.course.models import PAPER_MACS, SMALL
    from hrank_ssd.measure.flops import macs
    from hrank_ssd.nets.models import load_model

    course, _ = course_with_baselines(tmp_path, monkeypatch, slope=-1e-3, const=10.0)  # wider is faster: noise
    base = load_model(course.path("vgg16-ssd"))
    chosen, note = latency_widths(course, PAPER_MACS, base)
    assert chosen.kind == "macs" and "no widths on the table's grid keep within" in note
    assert macs(base, chosen.widths) <= macs(load_model(course.prune()))  # within the paper rate's MACs
    small, note = latency_widths(course, SMALL, base)  # the full widths are the cheapest: a fraction cannot be met
    assert "is below the cheapest widths" in note and all(k >= 0.25 * c for k, c in zip(small.widths, small.channels))


def test_extra_models_finetune_as_the_profile_says(tmp_path, monkeypatch):
    from hrank_ssd.course import making
    from hrank_ssd.course.models import FINETUNED, MB1_PRUNED, MODEL_KEYS, PAPER_MACS, SMALL, finetune_epochs
    from hrank_ssd.course.steps import Course

    offline = Course("offline", tmp_path / "run", tmp_path / "work", progress=False)
    p = offline.profile
    # the paper-MACs model is compared with the paper rate's: the same finetune, epochs and learning rate
    assert finetune_epochs(p, PAPER_MACS) == offline.model_epochs("vgg16-ssd-pruned") == p.finetune_epochs
    # offline every pruned model gets the paper-rate model's epochs: a fair comparison (no note in the tables)
    assert finetune_epochs(p, SMALL) == finetune_epochs(p, MB1_PRUNED) == p.small_finetune_epochs == p.finetune_epochs
    assert finetune_epochs(p, "vgg16-ssd") == finetune_epochs(p, "mb1-ssd") == 0
    assert FINETUNED == ("vgg16-ssd-pruned", PAPER_MACS, SMALL, MB1_PRUNED)
    trained = []
    monkeypatch.setattr(offline, "train", lambda key, net, epochs, lr, hooks=None, **kw:
                        trained.append((key, net, epochs, lr, kw["base_net"])) or offline.path(key))
    monkeypatch.setattr(offline, "prune", lambda rate=None, criterion="hrank", net="vgg16-ssd":
                        tmp_path / f"{net}-pruned.pth")
    monkeypatch.setattr(making, "latency_pruned", lambda course, key: tmp_path / f"{key}-init.pth")
    assert {k: offline.model(k) for k in MODEL_KEYS if k not in ("vgg16-ssd", "mb1-ssd")} == {
        k: offline.path(k) for k in FINETUNED}
    by_key = {key: (net, epochs, lr) for key, net, epochs, lr, _ in trained}
    assert by_key[PAPER_MACS] == by_key["vgg16-ssd-pruned"] == by_key[SMALL] == ("vgg16-ssd", 2, p.finetune_lr)
    assert by_key[MB1_PRUNED] == ("mb1-ssd", 2, p.mb1_finetune_lr) and p.mb1_finetune_lr != p.finetune_lr
    full = Course("full", tmp_path / "run2", tmp_path / "work2", progress=False)  # the published model stands in
    fp = full.profile  # short finetunes, every one at the rate for short runs (the published rate is for 120 epochs)
    assert finetune_epochs(fp, PAPER_MACS) == fp.student_finetune_epochs == finetune_epochs(fp, SMALL) > 1
    monkeypatch.setattr(full, "train", lambda key, net, epochs, lr, hooks=None, **kw: trained.append(lr))
    monkeypatch.setattr(full, "prune", lambda rate=None, criterion="hrank", net="vgg16-ssd": tmp_path / "mb1.pth")
    full.finetune(MB1_PRUNED)
    full.finetune(PAPER_MACS)
    assert trained[-2:] == [fp.mb1_finetune_lr, fp.short_finetune_lr] and fp.short_finetune_lr > 10 * fp.finetune_lr
    assert offline.settings()["mb1_compress_rate"] == "[0.3]*14"


def test_mobilenet_gets_its_own_ranks_and_pruning(tmp_path, monkeypatch):
    from hrank_ssd.hrank.ranks import has_ranks
    from hrank_ssd.nets.models import load_model, read_sidecar
    from hrank_ssd.nets.ssd import kept_channels

    course, _ = course_with_baselines(tmp_path, monkeypatch)
    monkeypatch.undo()  # the real class names: the ranks read the tiny synthetic data set
    ranks = course.rank_dir(net="mb1-ssd")
    assert ranks == course.work / "ranks-mb1-ssd" and has_ranks(ranks, "mb1-ssd")
    assert course.rank_dir() == course.work / "ranks"  # VGG's stay where they were
    pruned = course.prune(net="mb1-ssd")
    assert pruned == course.work / "models" / "mb1-ssd-pruned-0.3x14.pth"
    base = load_model(course.path("mb1-ssd"))
    rates = list(course.profile.mb1_compress_rate)
    assert load_model(pruned).plan.prunable == [kept_channels(c, r) for c, r in zip(base.plan.prunable, rates)]
    assert load_model(pruned).plan.prunable != base.plan.prunable
    assert read_sidecar(pruned)["criterion"] == "hrank" and read_sidecar(pruned)["compress_rate"] == rates
