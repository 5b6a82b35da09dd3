"""A published checkpoint must be the net and have the widths its manifest entry names (nets.models), checked where it
is downloaded: the original project's zip, whose members are found by glob, cannot hand over an unpruned model."""

from __future__ import annotations

import zipfile

import pytest
import torch
from rehearsal.standin import StandInWorld

from hrank_ssd.errors import HRankError
from hrank_ssd.io.downloads import fetch
from hrank_ssd.io.manifest import MANIFEST_ENV, load_manifest
from hrank_ssd.nets.compress import PRUNED_RATE
from hrank_ssd.nets.models import build_model, clean_state_dict, expected_widths, fit_problem

BUNDLE_ID = "1g2KkOMTeZ7u_EM9Ke2HpomvHm049Iqit"  # weights_manifest.json: hrank-ssd-bundle


def _save(model, path):
    torch.save(clean_state_dict(model), path)
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    return {"unpruned": _save(build_model("vgg16-ssd", 21), d / "vgg.pth"),
            "pruned": _save(build_model("vgg16-ssd", 21, compress_rate=PRUNED_RATE), d / "pruned.pth"),
            "half": _save(build_model("vgg16-ssd", 21, compress_rate=[0.5] * 16), d / "half.pth"),
            "mb1": _save(build_model("mb1-ssd", 21), d / "mb1.pth")}


def test_widths_of_the_published_rate():
    # the 14 prunable layers (conv1_1 ... fc6) of [0.1]*7+[0.5]*9 (extra entries cut): int(c * (1 - r)), as HRank
    assert expected_widths("vgg16-ssd", None) == [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512, 1024]
    assert expected_widths("vgg16-ssd", "[0.1]*7+[0.5]*9") == [57, 57, 115, 115, 230, 230, 230, 256, 256, 256, 256,
                                                                256, 256, 512]


def test_fit_problem_names_the_first_wrong_layer(checkpoints):
    man = load_manifest()
    pruned_art, vgg_art = man.get("vgg16-ssd-hrank"), man.get("vgg16-ssd")
    assert fit_problem(checkpoints["pruned"], pruned_art) is None
    assert fit_problem(checkpoints["unpruned"], vgg_art) is None
    assert fit_problem(checkpoints["unpruned"], pruned_art) == (
        "an unpruned vgg16-ssd checkpoint, not the one the manifest names: layer 1 (conv1_1) has 64 filters where "
        "compress rate [0.1]*7+[0.5]*9 gives 57")
    assert fit_problem(checkpoints["half"], pruned_art).startswith("a differently pruned vgg16-ssd checkpoint")
    assert fit_problem(checkpoints["pruned"], vgg_art).endswith("where the unpruned vgg16-ssd gives 64")
    assert fit_problem(checkpoints["mb1"], vgg_art) == "a mb1-ssd checkpoint, not vgg16-ssd"
    assert fit_problem(checkpoints["mb1"], man.get("voc-labels")) is None  # not a checkpoint entry: not its business


def test_unpruned_lowest_loss_member_is_refused_never_installed(checkpoints, tmp_path, monkeypatch):
    monkeypatch.delenv(MANIFEST_ENV, raising=False)
    bundle = tmp_path / "hrank-ssd-models.zip"
    with zipfile.ZipFile(bundle, "w", zipfile.ZIP_STORED) as z:  # the glob's lowest loss is the unpruned one
        z.write(checkpoints["unpruned"], "hrank-ssd-models/vgg16-ssd-Epoch-5-Loss-2.10.pth")
        z.write(checkpoints["pruned"], "hrank-ssd-models/vgg16-ssd-Epoch-119-Loss-2.93.pth")
    with StandInWorld(tmp_path / "world") as world:
        for name, value in world.environ().items():
            monkeypatch.setenv(name, value)
        world.serve_drive(BUNDLE_ID, bundle)
        with pytest.raises(HRankError) as info:
            fetch("vgg16-ssd-hrank", dest_dir=tmp_path / "dest", progress=False, check=fit_problem)
        assert not (tmp_path / "dest" / "models" / "vgg16-ssd-hrank-pruned.pth").exists()
        # without the check the same glob would have taken it
        got = fetch("vgg16-ssd-hrank", dest_dir=tmp_path / "plain", progress=False)
        assert got.read_bytes() == checkpoints["unpruned"].read_bytes()
        # an unfit file already in place is not trusted either
        with pytest.raises(HRankError, match="an unpruned vgg16-ssd checkpoint"):
            fetch("vgg16-ssd-hrank", dest_dir=tmp_path / "plain", progress=False, check=fit_problem)
    text = str(info.value)
    assert "\n" not in text and "gave" not in text
    assert "an unpruned vgg16-ssd checkpoint, not the one the manifest names: layer 1 (conv1_1)" in text


def test_course_refuses_the_unpruned_member_and_reports_the_stand_in(checkpoints, tmp_path, monkeypatch, capsys):
    """The full profile's pruned_model(): the refused download is said once, recorded as a substitute, and the
    student's own pruned model stands in (its training is replaced here: the rehearsal's unpruned scenario runs it)."""
    from hrank_ssd.course.steps import Course

    monkeypatch.delenv(MANIFEST_ENV, raising=False)
    bundle = tmp_path / "hrank-ssd-models.zip"
    with zipfile.ZipFile(bundle, "w", zipfile.ZIP_STORED) as z:
        z.write(checkpoints["unpruned"], "hrank-ssd-models/vgg16-ssd-Epoch-5-Loss-2.10.pth")
    own = tmp_path / "own-pruned.pth"
    monkeypatch.setattr(Course, "finetune_choice", lambda self, hooks=None: own)
    with StandInWorld(tmp_path / "world") as world:
        for name, value in world.environ().items():
            monkeypatch.setenv(name, value)
        world.serve_drive(BUNDLE_ID, bundle)
        course = Course("full-rehearsal", run_dir=tmp_path / "run", work_dir=tmp_path / "work", device="cpu",
                        progress=False)
        assert course.model("vgg16-ssd-pruned") == own
        asked = sum("drive.usercontent.google.com/download" in r for r in world.requests)
    assert asked == 1  # the refusal is remembered for the kernel's life: the bundle is not asked for again
    why = course.load_json("substitutes.json")["vgg16-ssd-pruned"]
    assert why.startswith("published pruned model unavailable: using your own finetuned pruned model instead")
    assert "an unpruned vgg16-ssd checkpoint, not the one the manifest names" in why and "\n" not in why
    assert capsys.readouterr().err.count("published pruned model unavailable") == 1
    assert not (tmp_path / "work" / "models" / "vgg16-ssd-hrank-pruned.pth").exists()
