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


def test_a_term_without_a_count_is_written_once():
    assert parse_compress_rate("[0.3]") == [0.3]
    assert parse_compress_rate("[0.1]*2+[0.3]+[0.5, 0.6]") == [0.1, 0.1, 0.3, 0.5, 0.6]
    assert format_compress_rate([0.3]) == "[0.3]"
    assert format_compress_rate([0.1, 0.1, 0.3, 0.5]) == "[0.1]*2+[0.3]+[0.5]"
    assert format_compress_rate([0.25, 0.5, 0.25]) == "[0.25]+[0.5]+[0.25]"  # equal rates only merge when adjacent
    assert format_compress_rate([]) == ""


WHERE = ' Write it like "[0.1]*7+[0.5]*9" (terms [rates...]*count joined by +, each rate in [0, 1))'


@pytest.mark.parametrize("call,message", [
    (lambda: parse_compress_rate(" "), "bad --compress_rate ' ': it is empty."),
    (lambda: parse_compress_rate("[0.1]*7+0.5"), "bad --compress_rate '[0.1]*7+0.5': cannot read the term '0.5'."),
    (lambda: parse_compress_rate("[0.1]+[x]*2"),
     "bad --compress_rate '[0.1]+[x]*2': '[x]*2' holds something that is not a number."),
    (lambda: parse_compress_rate("[0.1]+[,]*2"), "bad --compress_rate '[0.1]+[,]*2': '[,]*2' is an empty list."),
    (lambda: layer_rates([0.1] * 3, 5), "bad --compress_rate '[0.1]*3': it gives 3 rates but this net has 5 "
                                        "prunable layers."),
    (lambda: layer_rates([0.1, 0.2, 1.0, 0.1], 4),
     "bad --compress_rate '[0.1]+[0.2]+[1]+[0.1]': rate 1.0 for layer 3 is outside [0, 1)."),
    (lambda: layer_rates([0.1, None], 2), "bad --compress_rate '[0.1, None]': it is not a list of numbers."),
])
def test_errors_quote_the_users_rates_and_name_the_layer(call, message):
    """The whole one-line message: what the user wrote (or the list, written back in the same syntax), what is
    wrong with it (the 1-based layer of a rate out of range) and how to write it."""
    with pytest.raises(HRankError) as e:
        call()
    assert str(e.value) == message + WHERE


def test_type_errors_say_which_side_parses():
    with pytest.raises(TypeError) as e:
        layer_rates("[0.1]*14", 14)
    assert str(e.value) == "the library takes a list of rates: parse the user's text once with parse_compress_rate"
