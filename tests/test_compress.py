import pytest

from hrank_ssd.errors import HRankError
from hrank_ssd.nets.compress import format_compress_rate, layer_rates, parse_compress_rate


def rates_for(text, num_layers):
    """What a command does: parse the user's text once, then the library checks it against the net."""
    return layer_rates(parse_compress_rate(text), num_layers)


def test_original_syntax():
    assert parse_compress_rate("[0.1]*7+[0.5]*9") == [0.1] * 7 + [0.5] * 9  # the parser keeps every entry
    rates = rates_for("[0.1]*7+[0.5]*9", 14)
    assert rates == [0.1] * 7 + [0.5] * 7  # entries past the 14th are ignored
    assert rates_for("[0.]*100", 14) == [0.0] * 14
    assert rates_for("[0.1, 0.2]*7", 14) == [0.1, 0.2] * 7
    assert rates_for(" [0.2] * 14 ", 14) == [0.2] * 14
    assert layer_rates([0.3] * 14, 14) == [0.3] * 14
    assert layer_rates(None, 3) == [0.0, 0.0, 0.0]


def test_the_library_takes_lists_only():
    with pytest.raises(TypeError, match="parse"):
        layer_rates("[0.1]*14", 14)
    with pytest.raises(TypeError):
        parse_compress_rate([0.1] * 14)
    with pytest.raises(HRankError, match="not a list of numbers"):
        layer_rates(["a"] * 14, 14)


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
        rates_for(bad, 14)
    assert "\n" not in str(e.value)


def test_format_round_trip():
    rates = [0.1] * 7 + [0.5] * 7
    assert format_compress_rate(rates) == "[0.1]*7+[0.5]*7"
    assert rates_for(format_compress_rate(rates), 14) == rates
