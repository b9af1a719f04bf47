"""Failure classes, the fall-back decision and the client-facing error."""

from __future__ import annotations

import pytest

from sluicegate_contract.schema import Fallback
from sluicegate_sidecar.routing.outcome import classify, final_error, should_fall_back


@pytest.mark.parametrize(
    ("status", "exc", "expected"),
    [
        (200, None, None),
        (204, None, None),
        (200, "bad_response", "bad_response"),
        (429, None, "429"),
        (529, None, "429"),
        (500, None, "5xx"),
        (502, None, "5xx"),
        (503, None, "5xx"),
        (599, None, "5xx"),
        (401, None, "auth"),
        (403, None, "auth"),
        (400, None, "request"),
        (404, None, "request"),
        (413, None, "request"),
        (422, None, "request"),
        (408, None, "timeout"),
        (302, None, "bad_response"),
        (None, "timeout", "timeout"),
        (None, "connect", "connect"),
        (None, "reset", "connect"),
        (None, "bad_response", "bad_response"),
        (None, None, "connect"),
        (500, "timeout", "timeout"),
    ],
)
def test_classification_table(status, exc, expected):
    assert classify(status, exc) == expected


DEFAULT = Fallback()


@pytest.mark.parametrize("failure", ["429", "5xx", "timeout", "connect", "auth", "bad_response"])
def test_upstream_failures_fall_back_within_max_retries(failure):
    assert should_fall_back(failure, DEFAULT, 1)
    assert should_fall_back(failure, DEFAULT, 2)
    assert not should_fall_back(failure, DEFAULT, 3)


def test_the_requests_own_4xx_never_falls_back():
    assert not should_fall_back("request", DEFAULT, 1)


def test_nothing_falls_back_after_the_first_byte():
    assert not should_fall_back("5xx", DEFAULT, 1, after_first_byte=True)


def test_retry_on_limits_which_classes_fall_back_but_auth_always_moves_away_from_the_bad_key():
    only_429 = Fallback(max_retries=3, retry_on=("429",))
    assert should_fall_back("429", only_429, 1)
    assert not should_fall_back("5xx", only_429, 1)
    assert not should_fall_back("timeout", only_429, 1)
    assert not should_fall_back("bad_response", only_429, 1)
    assert should_fall_back("auth", only_429, 1)


def test_max_retries_zero_means_a_single_attempt():
    none = Fallback(max_retries=0)
    for failure in ("429", "5xx", "timeout", "connect", "auth", "bad_response"):
        assert not should_fall_back(failure, none, 1)


@pytest.mark.parametrize(
    ("failure", "upstream", "status", "code"),
    [
        ("429", 429, 429, "rate_limited"),
        ("timeout", None, 504, "upstream_timeout"),
        ("5xx", 503, 502, "upstream_error"),
        ("connect", None, 502, "upstream_error"),
        ("auth", 401, 502, "upstream_error"),
        ("bad_response", 200, 502, "bad_upstream_response"),
        ("request", 422, 422, "upstream_rejected_request"),
        ("request", None, 400, "upstream_rejected_request"),
    ],
)
def test_final_errors_for_the_client(failure, upstream, status, code):
    error = final_error(failure, upstream)
    assert (error.status, error.code) == (status, code)
