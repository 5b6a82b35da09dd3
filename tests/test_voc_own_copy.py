"""PASCAL VOC when the mirrors fail: your own copy (tars or an extracted VOCdevkit, named by $HRANK_SSD_VOC_SOURCE,
download_voc(source=...) or --voc_source) is used before any mirror, and with none the error is one line that says
every way out."""

from __future__ import annotations

import hashlib
import io
import json
import sys
import tarfile
from pathlib import Path

import pytest

from hrank_ssd.data.voc import VOCDataset
from hrank_ssd.errors import HRankError
from hrank_ssd.io.manifest import MANIFEST_ENV, Manifest
from hrank_ssd.io.voc_download import VOC_SETS, VOC_SOURCE_ENV, download_voc

ROOT = Path(__file__).resolve().parents[1]
DEAD = ["http://127.0.0.1:9/voc/", "http://127.0.0.1:9/mirror2/"]  # port 9 (discard): refused at once


def _tar(top: str, split: str, ids) -> bytes:
    files = {f"VOCdevkit/{top}/ImageSets/Main/{split}.txt": "".join(f"{i}\n" for i in ids).encode()}
    for i in ids:
        files[f"VOCdevkit/{top}/Annotations/{i}.xml"] = b"<annotation/>"
        files[f"VOCdevkit/{top}/JPEGImages/{i}.jpg"] = b"\xff\xd8jpeg"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


TARS = {"2007-trainval": _tar("VOC2007", "trainval", ["000005", "000007"]),
        "2007-test": _tar("VOC2007", "test", ["000001", "000004"])}


def _manifest(md5s=None) -> Manifest:
    """voc-<set> entries with these tars' md5s and two dead mirrors each."""
    md5s = md5s or {name: hashlib.md5(data).hexdigest() for name, data in TARS.items()}
    return Manifest({"artifacts": [
        {"name": f"voc-{name}", "file": f"data/{VOC_SETS[name][1]}", "kind": "voc", "md5": md5,
         "sources": [{"type": "http", "url": m + VOC_SETS[name][1]} for m in DEAD]} for name, md5 in md5s.items()]})


@pytest.fixture(autouse=True)
def no_setting(monkeypatch):
    monkeypatch.delenv(VOC_SOURCE_ENV, raising=False)


def test_own_tars_are_used_before_the_mirrors_and_never_deleted(tmp_path, monkeypatch):
    own = tmp_path / "MyDrive" / "VOC"
    (own / "2007").mkdir(parents=True)
    (own / VOC_SETS["2007-trainval"][1]).write_bytes(TARS["2007-trainval"])
    (own / "2007" / VOC_SETS["2007-test"][1]).write_bytes(TARS["2007-test"])  # one folder down is found too
    monkeypatch.setenv(VOC_SOURCE_ENV, str(own))
    devkit = download_voc(tmp_path / "data", sets=["2007-trainval", "2007-test"], manifest=_manifest(),
                          keep_tars=False, progress=False)
    assert len(VOCDataset(devkit / "VOC2007", split="trainval")) == 2
    assert VOCDataset(devkit / "VOC2007-test", split="test", is_test=True).ids == ["000001", "000004"]
    assert (own / VOC_SETS["2007-trainval"][1]).is_file() and (own / "2007" / VOC_SETS["2007-test"][1]).is_file()
    assert not list((tmp_path / "data").glob("*.tar"))
    record = json.loads((tmp_path / "data" / "downloads.json").read_text())
    assert record[VOC_SETS["2007-test"][1]]["source"] == f"own copy {own / '2007' / VOC_SETS['2007-test'][1]}"


def test_own_extracted_devkit_in_torchvisions_merged_layout_is_linked(tmp_path):
    own = tmp_path / "own"
    for data in TARS.values():  # both splits in one VOC2007 folder, as torchvision extracts them
        with tarfile.open(fileobj=io.BytesIO(data)) as t:
            t.extractall(own, filter="data")
    devkit = download_voc(tmp_path / "data", sets=["2007-trainval", "2007-test"], manifest=_manifest(),
                          progress=False, source=own)
    for folder in ("VOC2007", "VOC2007-test"):
        assert (devkit / folder).is_symlink() and (devkit / folder).resolve() == (own / "VOCdevkit" / "VOC2007")
    assert VOCDataset(devkit / "VOC2007-test", split="test", is_test=True).ids == ["000001", "000004"]
    record = json.loads((tmp_path / "data" / "downloads.json").read_text())
    assert record[VOC_SETS["2007-trainval"][1]]["bytes"] is None  # a folder on Drive is not walked for its size


def test_every_source_failing_is_one_line_with_every_way_out(tmp_path, monkeypatch):
    own = tmp_path / "own"
    own.mkdir()
    (own / VOC_SETS["2007-test"][1]).write_bytes(TARS["2007-trainval"])  # the wrong tar under the right name
    monkeypatch.setenv(VOC_SOURCE_ENV, str(own))
    with pytest.raises(HRankError) as info:
        download_voc(tmp_path / "data", sets=["2007-test"], manifest=_manifest(), progress=False)
    text = str(info.value)
    md5 = hashlib.md5(TARS["2007-test"]).hexdigest()
    assert "\n" not in text and text.startswith("could not download VOC 2007-test: tried ")
    assert all(f"{m}VOCtest_06-Nov-2007.tar: unreachable" in text for m in DEAD)  # each mirror, and why
    assert f"your copy {own / 'VOCtest_06-Nov-2007.tar'}: md5 " in text
    assert f"put VOCtest_06-Nov-2007.tar (md5 {md5}) or an extracted VOCdevkit/VOC2007-test in a folder and set " \
           f"{VOC_SOURCE_ENV}=that folder" in text
    assert f"put the tar at {(tmp_path / 'data' / 'VOCtest_06-Nov-2007.tar').resolve()}" in text
    monkeypatch.delenv(VOC_SOURCE_ENV)
    with pytest.raises(HRankError, match=f"tried http {DEAD[0]}VOCtest.*; bring your own copy: put VOCtest"):
        download_voc(tmp_path / "data", sets=["2007-test"], manifest=_manifest(), progress=False)
    monkeypatch.setenv(VOC_SOURCE_ENV, str(tmp_path / "not-mounted"))
    with pytest.raises(HRankError, match=f"\\${VOC_SOURCE_ENV} names .*not-mounted, which is not a folder"):
        download_voc(tmp_path / "data", sets=["2007-test"], manifest=_manifest(), progress=False)


def test_own_folder_without_the_set_falls_back_to_the_mirrors(tmp_path):
    own = tmp_path / "own"
    (own / "VOCdevkit" / "VOC2012").mkdir(parents=True)
    with pytest.raises(HRankError) as info:
        download_voc(tmp_path / "data", sets=["2007-trainval"], manifest=_manifest(), progress=False, source=own)
    assert f"{VOC_SOURCE_ENV} {own}: no VOCtrainval_06-Nov-2007.tar and no VOCdevkit/VOC2007 with trainval.txt" \
        in str(info.value)


def test_download_voc_script_voc_source_flag(tmp_path, monkeypatch, capsys):
    sys.path.insert(0, str(ROOT / "data_scripts"))
    try:
        import download_voc as script
    finally:
        sys.path.pop(0)
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps(_manifest().data))
    monkeypatch.setenv(MANIFEST_ENV, str(manifest))
    own = tmp_path / "own"
    own.mkdir()
    (own / VOC_SETS["2007-test"][1]).write_bytes(TARS["2007-test"])
    assert script.main(["--dest", str(tmp_path / "d"), "--sets", "2007-test", "--voc_source", str(own), "--quiet"]) == 0
    assert (tmp_path / "d" / "VOCdevkit" / "VOC2007-test" / "ImageSets" / "Main" / "test.txt").is_file()
    capsys.readouterr()
    assert script.main(["--dest", str(tmp_path / "e"), "--sets", "2007-test", "--quiet"]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]  # the rest: progress lines
    assert len(err) == 1 and err[0].startswith("error: could not download VOC 2007-test") and VOC_SOURCE_ENV in err[0]


def test_own_folders_merged_into_one_test_dir_are_copied_not_relinked(tmp_path):
    own = tmp_path / "own"
    for name, data in TARS.items():  # trainval in VOCdevkit/VOC2007, test in VOCdevkit/VOC2007-test
        with tarfile.open(fileobj=io.BytesIO(data)) as t:
            t.extractall(tmp_path / name, filter="data")
        (own / "VOCdevkit").mkdir(parents=True, exist_ok=True)
        (tmp_path / name / "VOCdevkit" / "VOC2007").rename(own / "VOCdevkit" / VOC_SETS[name][2])
    devkit = download_voc(tmp_path / "data", sets=["2007-trainval", "2007-test"], manifest=_manifest(),
                          test_dir="VOC2007", progress=False, source=own)
    main = devkit / "VOC2007" / "ImageSets" / "Main"
    assert not (devkit / "VOC2007").is_symlink() and sorted(p.name for p in main.iterdir()) == ["test.txt",
                                                                                               "trainval.txt"]
    assert sorted(p.name for p in (own / "VOCdevkit" / "VOC2007" / "ImageSets" / "Main").iterdir()) == \
        ["trainval.txt"]  # your folders untouched
