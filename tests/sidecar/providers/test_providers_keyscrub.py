"""The key scrubber: any fragment of the connection's key of 8+ characters is cut from a text."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sluicegate_sidecar.providers.base import Connection
from sluicegate_sidecar.providers.keyscrub import NO_KEY, REDACTED, KeyScrubber

KEY = "tok9f8e7d6c5b4a3928170abcdefXYZ"


def test_the_whole_key_a_cut_key_and_a_middle_fragment_are_replaced_and_the_text_around_kept() -> None:
    scrub = KeyScrubber(KEY).scrub
    assert scrub(f"API key '{KEY}' has no access") == f"API key '{REDACTED}' has no access"
    assert scrub(f"key {KEY[3:]} bad") == f"key {REDACTED} bad"
    assert scrub(f"x{KEY[9:17]}y") == f"x{REDACTED}y"
    assert scrub(f"{KEY[:10]} and {KEY[-9:]}") == f"{REDACTED} and {REDACTED}"


def test_fragments_shorter_than_eight_characters_and_unrelated_text_are_left_alone() -> None:
    scrub = KeyScrubber(KEY).scrub
    assert (
        scrub(f"last four {KEY[-4:]}, first seven {KEY[:7]}")
        == f"last four {KEY[-4:]}, first seven {KEY[:7]}"
    )
    assert scrub("The model does not exist.") == "The model does not exist."


def test_key_shaped_strings_are_replaced_without_a_key_too() -> None:
    assert (
        NO_KEY.scrub("Incorrect API key provided: sk-proj-****abcd")
        == f"Incorrect API key provided: {REDACTED}"
    )
    assert NO_KEY.scrub("Authorization: Bearer abc.def") == f"Authorization: {REDACTED}"


def test_a_connection_builds_its_scrubber_from_its_key_and_never_shows_the_key_in_its_repr() -> None:
    conn = Connection("c", "openai-compatible", "http://x", api_key=KEY)
    assert conn.scrubber.scrub(KEY) == REDACTED
    assert KEY not in repr(conn)
    assert conn == Connection("c", "openai-compatible", "http://x", api_key=KEY)


@given(st.text(max_size=40), st.integers(0, len(KEY) - 8), st.integers(8, len(KEY)), st.text(max_size=40))
def test_no_fragment_of_eight_or_more_characters_survives_anywhere_in_a_text(
    before: str, start: int, length: int, after: str
) -> None:
    fragment = KEY[start : start + length]
    out = KeyScrubber(KEY).scrub(before + fragment + after)
    assert not any(KEY[i : i + 8] in out for i in range(len(KEY) - 7))
