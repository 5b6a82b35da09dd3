"""The CLI's error contract: bad input ends in one line on stderr and exit code 2, never a traceback."""

import pytest
import torch

from hrank_ssd.cli.main import main, one_line
from hrank_ssd.errors import HRankError


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize("device, says", [("gpu", "unknown --device 'gpu'"),
                                          ("cuda:7", "cuda")])
def test_bad_device(capsys, device, says):
    assert main(["bench", "--nets", "mb1-ssd", "--width", "0.05", "--device", device]) == 2
    assert says in _one_error_line(capsys)


def test_unwritable_output_path(capsys, tmp_path):
    folder = tmp_path / "a_folder"
    folder.mkdir()
    assert main(["flops", "--net", "mb1-ssd", "--csv", str(folder)]) == 2  # a folder where a file is expected
    err = _one_error_line(capsys)
    assert str(folder) in err and "check the path" in err
    assert folder.is_dir()  # nothing lost


class _Broken(torch.utils.data.Dataset):
    def __len__(self):
        return 2

    def __getitem__(self, i):
        raise HRankError("annotation img_1.xml is not valid XML: fix or remove it")


def test_error_from_a_dataloader_worker_is_one_line():
    loader = torch.utils.data.DataLoader(_Broken(), num_workers=1)
    with pytest.raises(HRankError) as info:
        next(iter(loader))
    assert "Original Traceback" in str(info.value)  # what torch hands over
    assert one_line(info.value) == "annotation img_1.xml is not valid XML: fix or remove it"
    assert one_line(HRankError("plain message")) == "plain message"

