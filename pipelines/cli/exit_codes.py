"""The exit codes of the ``pipelines`` command, the one place they are written down.

=====  ==============  ========================================================
code   name            meaning
=====  ==============  ========================================================
0      OK              every item done (``list``, ``serve``, ``build-server``:
                       the command did its work)
1      ITEMS_FAILED    some items failed: their records hold the errors; for
                       ``news`` also a feed that failed or ``--deadline`` passed
2      USAGE           bad arguments or flags that do not fit together, an
                       input, target, schema or price file that cannot be used,
                       model settings or the embedded model (ConfigurationError,
                       InputError, EmbeddedModelError), a ``--budget`` or
                       ``--cache`` Redis out of reach (BudgetUnavailable,
                       CacheUnavailable), or every Ray worker lost (WorkersLost)
3      COST_CAP        ``run`` stopped at ``--max-cost``: the same command with
                       a higher cap goes on where it stopped
4      WRITE_FAILED    ``run`` or ``news`` stopped because its output could
                       not be written (a full disk: OutputWriteError); what
                       was written is kept, the same command resumes once
                       there is room
130    INTERRUPTED     stopped by SIGINT (Ctrl-C); resumable
143    TERMINATED      stopped by SIGTERM; resumable
=====  ==============  ========================================================

130 and 143 follow the shell's convention, 128 plus the signal's number.
"""

from __future__ import annotations

import enum
import signal

__all__ = ["ExitCode"]


class ExitCode(enum.IntEnum):
    """How a ``pipelines`` command ended; see the module docstring for each code."""

    OK = 0
    ITEMS_FAILED = 1
    USAGE = 2
    COST_CAP = 3
    WRITE_FAILED = 4
    INTERRUPTED = 128 + signal.SIGINT
    TERMINATED = 128 + signal.SIGTERM

    @classmethod
    def for_signal(cls, sig: int) -> ExitCode:
        """Return the code of a run stopped by ``sig`` (SIGINT or SIGTERM)."""
        return cls(128 + sig)

    @classmethod
    def for_items(cls, failed: int) -> ExitCode:
        """Return OK when no item failed, else ITEMS_FAILED."""
        return cls.OK if failed == 0 else cls.ITEMS_FAILED
