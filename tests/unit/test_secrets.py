"""Generated secrets: a generated Erlang cookie is always one EMQX can compare as written."""

from __future__ import annotations

import pytest

from components.config_types import ERLANG_COOKIE
from components.secrets import COOKIE_LENGTH, letter_led


@pytest.mark.parametrize(
    "generated",
    [
        "0" * COOKIE_LENGTH,
        "7aB" + "x" * (COOKIE_LENGTH - 3),
        "-" + "y" * (COOKIE_LENGTH - 1),
        "Ab" * (COOKIE_LENGTH // 2),
    ],
)
def test_generated_cookie_always_starts_with_a_letter(generated: str) -> None:
    cookie = letter_led(generated)
    assert ERLANG_COOKIE.fullmatch(cookie)
    assert generated in cookie  # the random part is kept whole


def test_a_letter_led_cookie_is_kept_unchanged() -> None:
    generated = "Q" + "1" * (COOKIE_LENGTH - 1)
    assert letter_led(generated) == generated
