"""The circuit breaker per (connection, model) and the bad-key bench per connection."""

from __future__ import annotations

from sluicegate_sidecar.routing.health import HealthBook

C, M = "oai-main", "gpt-4o"


def fail(book, n, now, kind="5xx"):
    for _ in range(n):
        book.record_failure(C, M, kind, now)


def test_breaker_stays_closed_below_the_threshold_and_a_success_resets_the_count():
    book = HealthBook()
    fail(book, 4, 0.0)
    assert book.state(C, M, 1.0) == "closed" and book.usable(C, M, 1.0)
    book.record_success(C, M)
    fail(book, 4, 2.0)
    assert book.state(C, M, 3.0) == "closed"


def test_breaker_opens_after_five_consecutive_failures_for_thirty_seconds():
    book = HealthBook()
    fail(book, 5, 0.0)
    assert book.state(C, M, 1.0) == "open"
    assert not book.usable(C, M, 29.0)
    assert not book.acquire(C, M, 29.0)
    assert book.state(C, M, 31.0) == "half_open"
    assert book.usable("oai-main", "gpt-4o-mini", 1.0)  # other models of the connection are unaffected


def test_half_open_admits_a_single_probe_and_success_closes():
    book = HealthBook()
    fail(book, 5, 0.0)
    assert book.usable(C, M, 31.0)
    assert book.acquire(C, M, 31.0)
    assert not book.usable(C, M, 31.5)  # the probe is in flight
    assert not book.acquire(C, M, 31.5)
    book.record_success(C, M)
    assert book.state(C, M, 32.0) == "closed"
    assert book.acquire(C, M, 32.0) and book.acquire(C, M, 32.0)


def test_a_failed_probe_reopens_with_a_doubled_cool_down_up_to_five_minutes():
    book = HealthBook()
    fail(book, 5, 0.0)
    now = 30.0
    expected = [60.0, 120.0, 240.0, 300.0, 300.0]
    for cooldown in expected:
        assert book.acquire(C, M, now)
        book.record_failure(C, M, "timeout", now)
        assert book.state(C, M, now + cooldown - 0.01) == "open"
        assert book.state(C, M, now + cooldown) == "half_open"
        now += cooldown
    assert book.acquire(C, M, now)
    book.record_success(C, M)
    fail(book, 5, now)  # after closing, the cool-down starts over at 30 s
    assert book.state(C, M, now + 30.0) == "half_open"


def test_a_lost_probe_frees_itself_after_the_probe_timeout():
    book = HealthBook(probe_timeout=10.0)
    fail(book, 5, 0.0)
    assert book.acquire(C, M, 30.0)
    assert not book.usable(C, M, 39.0)
    assert book.usable(C, M, 40.0)


def test_a_released_probe_can_be_taken_again():
    book = HealthBook()
    fail(book, 5, 0.0)
    assert book.acquire(C, M, 30.0)
    book.release(C, M)
    assert book.acquire(C, M, 30.1)


def test_retry_after_on_429_opens_the_breaker_for_that_long():
    book = HealthBook()
    book.record_failure(C, M, "429", 100.0, retry_after=7.5)
    assert book.state(C, M, 107.4) == "open"
    assert book.state(C, M, 107.5) == "half_open"
    book.record_failure(C, M, "429", 200.0, retry_after=400.0)
    assert not book.usable(C, M, 599.0)


def test_a_shorter_retry_after_never_shortens_an_open_breaker():
    book = HealthBook()
    book.record_failure(C, M, "429", 0.0, retry_after=60.0)
    book.record_failure(C, M, "429", 1.0, retry_after=2.0)
    assert book.state(C, M, 10.0) == "open"


def test_429_without_retry_after_counts_like_any_failure():
    book = HealthBook()
    fail(book, 4, 0.0, kind="429")
    assert book.state(C, M, 1.0) == "closed"
    fail(book, 1, 1.0, kind="429")
    assert book.state(C, M, 1.5) == "open"


def test_a_burst_of_connect_errors_counts_once_per_second():
    book = HealthBook()
    for i in range(50):
        book.record_failure(C, M, "connect", 10.0 + i * 0.01)
    assert book.state(C, M, 11.0) == "closed"
    for second in range(1, 5):
        book.record_failure(C, M, "connect", 10.0 + second * 1.0)
    assert book.state(C, M, 15.0) == "open"


def test_auth_failure_benches_every_model_of_the_connection_for_five_minutes():
    book = HealthBook()
    book.record_failure(C, M, "auth", 0.0)
    assert book.key_bad(C, 1.0)
    assert not book.usable(C, M, 1.0)
    assert not book.usable(C, "gpt-4o-mini", 299.0)
    assert book.usable("oai-backup", M, 1.0)
    assert book.usable(C, M, 300.0)
    assert book.state(C, M, 1.0) == "closed"  # the breaker itself is not involved


def test_mark_key_bad_and_clear_key_bad():
    book = HealthBook(key_bad_cooldown=60.0)
    book.mark_key_bad(C, 0.0)
    assert not book.usable(C, M, 59.0)
    book.clear_key_bad(C)
    assert book.usable(C, M, 1.0)


def test_client_errors_neither_count_nor_reset_failures():
    book = HealthBook()
    fail(book, 4, 0.0)
    book.record_failure(C, M, "request", 1.0)
    fail(book, 1, 2.0)
    assert book.state(C, M, 3.0) == "open"


def test_bad_responses_count_as_breaker_failures():
    book = HealthBook(failure_threshold=2)
    fail(book, 2, 0.0, kind="bad_response")
    assert book.state(C, M, 1.0) == "open"


def test_books_are_independent():
    first, second = HealthBook(), HealthBook()
    fail(first, 5, 0.0)
    assert second.state(C, M, 1.0) == "closed"
