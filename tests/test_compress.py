import pytest

from hrank_ssd.errors import HRankError
from hrank_ssd.nets.compress import format_compress_rate, parse_compress_rate


def test_original_syntax():
    rates = parse_compress_rate("[0.1]*7+[0.5]*9", 14)
    assert rates == [0.1] * 7 + [0.5] * 7  # entries past the 14th are ignored
    assert parse_compress_rate("[0.]*100", 14) == [0.0] * 14
    assert parse_compress_rate("[0.1, 0.2]*7", 14) == [0.1, 0.2] * 7
    assert parse_compress_rate(" [0.2] * 14 ", 14) == [0.2] * 14
    assert parse_compress_rate([0.3] * 14, 14) == [0.3] * 14
    assert parse_compress_rate(None, 3) == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("bad,why", [
    ("[0.1]*7", "gives 7 rates"),
    ("[1.0]*14", "outside"),
    ("[-0.1]*14", "outside"),
    ("__import__('os')", "cannot read"),
    ("[0.1]*7+[a]*9", "not a number"),
    ("", "empty"),
    ("[]*14", "empty list"),
])
def test_bad_rates_give_clear_errors(bad, why):
    with pytest.raises(HRankError, match=why) as e:
        parse_compress_rate(bad, 14)
    assert "\n" not in str(e.value)


def test_format_round_trip():
    rates = [0.1] * 7 + [0.5] * 7
    assert format_compress_rate(rates) == "[0.1]*7+[0.5]*7"
    assert parse_compress_rate(format_compress_rate(rates), 14) == rates
