"""The window log: a provider's per-window counts of whole requests, on times the test passes."""

import pytest

from lc_async_pipelines.runner.limits._window import WindowLog
from lc_async_pipelines.runner.limits.store import WINDOW_GUARD_S, WINDOW_S, BudgetRates


def send_paced(log: WindowLog, tokens: float, every_s: float, count: int) -> list[float]:
    """Send ``count`` requests, each due ``every_s`` after the last (a bucket's pace); their times."""
    sent, due = [], 0.0
    for _ in range(count):
        at = due + log.wait(tokens, due)
        log.add(tokens, at)
        sent.append(at)
        due = at + every_s
    return sent


def most_in_any_window(sent: list[float], tokens: float, window_s: float = 1.0) -> float:
    """The most tokens a provider's window of ``window_s``, opened by any request, counts."""
    return max(tokens * sum(start <= t < start + window_s for t in sent) for start in sent)


def test_a_pace_just_under_the_limit_still_overfills_a_window_of_whole_requests():
    # the cause of the 429s at tpm = limit: calls of 4 tokens at 49.5 tokens/s, 50 a window
    due = [i * 4 / 49.5 for i in range(40)]
    assert most_in_any_window(due, 4) == 52  # 13 calls in 0.97 s


def test_the_log_holds_each_window_to_its_tokens_whatever_its_start():
    log = WindowLog(None, 50, window_s=1.0, guard_s=0.02)
    sent = send_paced(log, 4, 4 / 49.5, 40)
    assert most_in_any_window(sent, 4) == 48  # 12 calls: the 13th waits for the window
    assert most_in_any_window(sent, 4, window_s=1.02) == 48  # and the guard
    # the 13th goes when the 1st leaves the window (and its guard)
    assert sent[12] == pytest.approx(sent[0] + 1.02)


def test_the_log_counts_requests_too():
    log = WindowLog(10, None, window_s=1.0, guard_s=0.0)
    sent = send_paced(log, 0, 0.05, 30)  # asked for twice the rate
    assert sent[:10] == pytest.approx([i * 0.05 for i in range(10)])
    assert sent[10] == pytest.approx(1.0) and most_in_any_window(sent, 1) == 10


def test_a_request_is_counted_when_it_goes_not_when_it_was_due():
    log = WindowLog(2, None, window_s=1.0)
    log.add(0, 0.0)
    log.add(0, 0.3)  # due at 0.0, woken late by a busy loop: the provider counts it at 0.3
    assert log.wait(0, 0.5) == pytest.approx(0.5)  # the window of the first
    assert log.wait(0, 1.0) == pytest.approx(0.0)


def test_settled_usage_moves_the_count_and_never_below_empty():
    log = WindowLog(None, 50, window_s=1.0)
    first = log.add(30, 0.0)
    assert log.wait(30, 0.1) == pytest.approx(0.9)
    log.settle(first, -25)  # it used 5
    assert log.wait(30, 0.1) == 0
    log.settle(first, -100)
    assert first.tokens == 0
    log.add(45, 0.1)
    log.settle(first, +10)  # it used 10 after all: 55 counted, the next waits
    assert log.wait(1, 0.2) == pytest.approx(0.8)


def test_a_request_larger_than_a_window_goes_once_its_window_is_empty():
    log = WindowLog(None, 50, window_s=1.0)
    log.add(10, 0.0)
    assert log.wait(80, 0.5) == pytest.approx(0.5)
    assert log.wait(80, 1.0) == 0


def test_old_requests_are_forgotten_and_bad_limits_refused():
    log = WindowLog(1, None, window_s=1.0)
    for t in range(100):
        log.add(0, float(t))
    assert len(log._booked) == 1
    with pytest.raises(ValueError, match="positive"):
        WindowLog(0, None)
    with pytest.raises(ValueError, match="guard_s"):
        WindowLog(1, None, guard_s=-1)


def test_the_window_counts_the_limits_themselves_not_less_the_margin():
    rates = BudgetRates.of(600, 3000, margin=0.01)
    # requests stay with their bucket: at 99% it never lets a window count 11
    assert (rates.window_requests, rates.window_tokens) == (None, 50)
    log = rates.window_log()
    assert log is not None and log.span_s == pytest.approx(WINDOW_S + WINDOW_GUARD_S)
    assert BudgetRates.of(600, None, 0.01).window_log() is None
