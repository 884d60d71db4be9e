"""SIGINT and SIGTERM, the same for every command: the first stops gracefully, a second at once.

A command gives the helper what "gracefully" and "at once" mean for it; the
helper keeps which signal came first, for the exit code (130 or 143).
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, NoReturn

from lc_async_pipelines.cli.exit_codes import ExitCode

if TYPE_CHECKING:
    import asyncio
    import threading

__all__ = ["STOP_SIGNALS", "StopSignals", "stop_loop_on_signals", "stop_thread_on_signals"]

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
STOP_NOW_MESSAGE = "stopping now; items in flight run again on resume"


def graceful_message(grace_s: float) -> str:
    """What the first signal prints: no new items, and the grace those in flight get."""
    return f"stopping: no new items; in flight get {grace_s:g} s (again to stop now)"


class StopSignals:
    """Counts the stop signals: the first calls ``on_first``, any later one ``on_second``."""

    def __init__(
        self,
        on_first: Callable[[], object],
        on_second: Callable[[], object],
        *,
        first_message: str | None,
        second_message: str = STOP_NOW_MESSAGE,
    ) -> None:
        self.received: list[int] = []
        self._on_first = on_first
        self._on_second = on_second
        self._first_message = first_message
        self._second_message = second_message

    def handle(self, sig: int) -> None:
        """React to one SIGINT or SIGTERM."""
        self.received.append(sig)
        if len(self.received) > 1:
            print(self._second_message, file=sys.stderr)
            self._on_second()
            return
        if self._first_message is not None:
            print(self._first_message, file=sys.stderr)
        self._on_first()

    @property
    def exit_code(self) -> ExitCode | None:
        """130 or 143 after the first signal (SIGINT or SIGTERM); None while none came."""
        return ExitCode.for_signal(self.received[0]) if self.received else None


def stop_loop_on_signals(stop: asyncio.Event, *, grace_s: float) -> StopSignals:
    """Install the helper on the running event loop, for the rest of its life.

    The first signal sets ``stop`` (no new item starts; those in flight get
    ``grace_s``); a second one cancels the current task, which the command
    turns into its exit code. The loop drops the handlers when it closes.
    """
    import asyncio

    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    signals = StopSignals(
        stop.set,
        task.cancel if task is not None else stop.set,
        first_message=graceful_message(grace_s),
    )
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, signals.handle, sig)
    return signals


def _raise_keyboard_interrupt() -> NoReturn:
    raise KeyboardInterrupt


@contextmanager
def stop_thread_on_signals(stop: threading.Event) -> Iterator[StopSignals]:
    """Install the helper for a command without an event loop, in the main thread.

    The first signal sets ``stop``; a second one raises KeyboardInterrupt where
    the main thread is. The previous handlers come back on leaving.
    """
    signals = StopSignals(
        stop.set, _raise_keyboard_interrupt, first_message=None, second_message="stopping now"
    )
    previous = {
        sig: signal.signal(sig, lambda sig, _frame: signals.handle(sig)) for sig in STOP_SIGNALS
    }
    try:
        yield signals
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
