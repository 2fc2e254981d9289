"""Templates cannot render unbounded text: each field and the whole text are capped."""

from __future__ import annotations

from lambda_destinations.handlers.templates import FIELD_MAX, RENDERED_MAX, Template


def test_a_padded_field_repeated_is_cut_to_the_documented_caps() -> None:
    # given: the hostile template of 200 fields padded to 9,999 characters (20 MB uncapped)
    template = Template.compile("{error_message:x<9999}" * 200, where="handlers.t.text")

    # when
    text = template.render({"error_message": "boom"})

    # then
    assert len(text) == RENDERED_MAX
    assert text.endswith("…")
    assert text.startswith("boom" + "x" * 9995 + "boom")


def test_one_huge_field_is_cut_to_field_max() -> None:
    template = Template.compile("[{payload}]", where="handlers.t.text")

    text = template.render({"payload": {"blob": "y" * 50_000}})

    assert len(text) == FIELD_MAX + 2
    assert text.endswith("…]")


def test_short_text_is_untouched() -> None:
    template = Template.compile("{function_name:>10}|", where="handlers.t.text")
    assert template.render({"function_name": "orders"}) == "    orders|"
