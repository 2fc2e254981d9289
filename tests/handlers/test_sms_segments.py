"""SMS segments: GSM-7 and UCS-2 counting, and cutting text cleanly to a number of them."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lambda_destinations.handlers.sms import count_segments, fit_segments, is_gsm, sms_text


@pytest.mark.parametrize(
    ("text", "segments"),
    [
        ("", 1),
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("€" * 80, 1),  # extension characters take two septets: 160
        ("€" * 81, 2),
        ("ж" * 70, 1),  # UCS-2
        ("ж" * 71, 2),
        ("ж" * 134, 2),
        ("ж" * 135, 3),
        ("😀" * 35, 1),  # outside the BMP: a surrogate pair, two units
        ("😀" * 36, 2),
        ("a" * 152 + "€" + "a" * 153, 3),  # the € does not straddle segments 1 and 2
    ],
)
def test_segments_are_counted_as_phones_count_them(text: str, segments: int) -> None:
    assert count_segments(text) == segments


def test_gsm_or_not() -> None:
    assert is_gsm("Hello, world! @£$ äöü {}[]€")
    assert not is_gsm("naïve")  # ï is not in GSM 03.38
    assert not is_gsm("ok 👍")


def test_text_that_fits_is_left_alone() -> None:
    assert fit_segments("orders-api failed: TimeoutError", 1) == "orders-api failed: TimeoutError"


def test_long_gsm_text_is_cut_at_a_word_with_three_dots() -> None:
    text = "orders-api failed (RetriesExhausted): " + "timed out waiting for stock " * 20

    cut = fit_segments(text, 1)

    assert len(cut) <= 160
    assert cut.endswith("...")
    assert text.startswith(cut[:-3])
    assert cut[:-3].endswith(("waiting", "for", "stock", "out", "timed"))
    assert count_segments(cut) == 1


def test_ucs2_text_is_cut_with_an_ellipsis_and_stays_whole() -> None:
    text = "Сбой функции orders-api: превышено время ожидания " * 5

    cut = fit_segments(text, 2)

    assert cut.endswith("…")
    assert count_segments(cut) == 2
    assert text.startswith(cut[:-1])


@pytest.mark.parametrize("char", ["é", "€", "中"])
def test_ten_segments_of_wide_characters_are_cut_to_the_1600_bytes_sns_takes(char: str) -> None:
    # given: ten segments allowed, of text whose characters take more bytes in UTF-8 than
    # units in a segment (2 for a GSM-7 "é", 3 for a "€" of two septets or a UCS-2 "中")
    text = "orders-api: " + char * 2000

    # when
    cut = fit_segments(text, 10)

    # then: within SNS's 1,600 bytes (it refuses a longer Publish), cut cleanly
    assert len(cut.encode()) <= 1600
    assert len(cut.encode()) > 1500  # not cut shorter than it must be
    assert cut.endswith(("...", "…"))
    assert text.startswith(cut.removesuffix("...").removesuffix("…"))
    assert count_segments(cut) <= 10


def test_an_emoji_sequence_is_never_split() -> None:
    family = "👨\u200d👩\u200d👧"
    text = "x" * 60 + family * 10

    cut = fit_segments(text, 1)

    body = cut[:-1]
    assert count_segments(cut) == 1
    assert body.count("\u200d") == 2 * body.count("👧")  # whole families only


@pytest.mark.parametrize(
    "character",
    [
        "\u0915\u093f",  # Devanagari "ki": the vowel sign is a mark of no combining class
        "\U0001f468\u200d\U0001f469\u200d\U0001f467",  # a family: joined by ZWJ
        "\U0001f1eb\U0001f1f7",  # a flag: two regional indicators
        "1\ufe0f\u20e3",  # a keycap: an enclosing mark
        "\u1100\u1161\u11a8",  # a Hangul syllable in jamo
        "\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",  # tags
    ],
)
def test_a_character_read_as_one_is_never_split_wherever_the_cut_falls(character: str) -> None:
    for shift in range(40):
        text = "x" * (60 + shift) + character * 10

        cut = fit_segments(text, 1)

        kept = cut.removesuffix("...").removesuffix("…").lstrip("x")
        assert kept == character * (len(kept) // len(character)), (shift, cut)


@settings(max_examples=300, deadline=None)
@given(
    st.text(
        alphabet=st.sampled_from([*"abc XYZ.,€[]{}", "ж", "é", "😀", "\u0301", "\u200d"]),
        max_size=900,
    ),
    st.integers(min_value=1, max_value=10),
)
def test_fitted_text_always_fits_and_keeps_its_start(text: str, most: int) -> None:
    cut = fit_segments(text, most)

    assert count_segments(cut) <= most
    assert len(cut.encode("utf-8", "surrogatepass")) <= 1600
    if cut != text:
        body = cut[:-3] if cut.endswith("...") else cut[:-1]
        assert cut.endswith(("...", "…"))
        assert text.startswith(body)


@pytest.mark.parametrize("invisible", ["\ufeff", "\u200b", "\u2060", "\u00ad"])
def test_an_invisible_character_does_not_make_gsm_text_ucs2(invisible: str) -> None:
    # a byte order mark at the start of an error message (read from a file), a zero-width
    # space: before, the text went UCS-2, and 150 letters were cut to 69 in one segment
    text = invisible + "a" * 75 + invisible + "b" * 75

    sent = fit_segments(sms_text(text), 1)

    assert sent == "a" * 75 + "b" * 75
    assert count_segments(sent) == 1
