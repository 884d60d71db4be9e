"""The errors this library raises, all under one base class, and what the command line exits with.

Catch :class:`PipelinesError` to catch every one of them. Each subclass also
derives from the standard exception it refines, so code written against the
standard types keeps working. The right-hand column is what ``pipelines``
does when the error reaches it: an exit code, or the item's error record
(the run goes on with the other items)::

    PipelinesError                                          CLI     refines
    ├── ConfigurationError     a setting, flag or schema    exit 2  ValueError
    ├── InputError             the input file as a whole    exit 2  ValueError
    │   └── RowError           one row cannot be used       record  ValueError
    ├── DeadlineExceeded       an item or request too late  record  TimeoutError
    ├── EmbeddedModelError     llama-server or the GGUF     exit 2  RuntimeError
    ├── OutputValidationError  output does not fit schema   record  OutputParserException
    ├── FetchError             a feed or article unread     record  OSError
    ├── BudgetUnavailable      the budget's Redis is down   exit 2  ConnectionError
    ├── CacheUnavailable       the cache's Redis is down    exit 2  ConnectionError
    ├── WorkersLost            every Ray worker died        exit 2  RuntimeError
    └── OutputWriteError       the output cannot be written exit 4  OSError

The command line's exit codes (``lc_async_pipelines.cli.ExitCode``): 0 every
item done; 1 the run ended and some items failed (their records say why); 2
bad arguments, configuration or input, or a store or the embedded model that
cannot be reached, with the output untouched or resumable; 3 the
``--max-cost`` cap stopped the run (resumable with a higher cap); 4 the output
could not be written, a full disk (the run stopped at once, what was written is
kept; resumable once there is room); 130 and 143 stopped by SIGINT or SIGTERM
(resumable: run the same command again).

In the web service, :class:`DeadlineExceeded` is HTTP 504 and a bad input HTTP 422.

Errors from a model provider (``openai.APIStatusError`` and the like) are not
wrapped: they reach records and handlers with their own class, which is what
the retry decisions (:func:`lc_async_pipelines.runner.is_transient`) read.
Match errors by class, never by their text.
"""

from __future__ import annotations

from langchain_core.exceptions import OutputParserException

__all__ = [
    "BudgetUnavailable",
    "CacheUnavailable",
    "ConfigurationError",
    "DeadlineExceeded",
    "EmbeddedModelError",
    "FetchError",
    "InputError",
    "OutputValidationError",
    "OutputWriteError",
    "PipelinesError",
    "RowError",
    "WorkersLost",
]


class PipelinesError(Exception):
    """Base class of every error raised by lc_async_pipelines."""


class ConfigurationError(PipelinesError, ValueError):
    """A setting, command-line flag, ``module:attr`` target, prompt file or schema is wrong."""


class InputError(PipelinesError, ValueError):
    """The input file as a whole cannot be read (missing, unknown format, not an array)."""


class RowError(InputError):
    """One input row cannot be used (missing field or prompt variable, bad bytes, empty text).

    The runner writes it as that row's error record and goes on with the others.
    """


class DeadlineExceeded(PipelinesError, TimeoutError):
    """An item (all its attempts and backoff) or a service request ran past its deadline."""


class EmbeddedModelError(PipelinesError, RuntimeError):
    """The embedded model's ``llama-server`` or GGUF file cannot be found, built or started."""


class OutputValidationError(PipelinesError, OutputParserException):
    """A structured output does not parse as JSON or does not fit its schema.

    A subclass of LangChain's ``OutputParserException``; the runner retries it
    (the model samples again), then records it as the item's error.
    """


class FetchError(PipelinesError, OSError):
    """A news source or article cannot be fetched, or its body is not what was asked for.

    Attributes:
        url: the URL asked for (credentials scrubbed).
        cause: one line a user can act on: ``"HTTP 404"``, ``"timed out after 10 s"``,
            ``"not a feed (text/html)"``, ``"larger than 5000000 bytes"``.
        status: the HTTP status, when the server answered.
    """

    def __init__(self, url: str, cause: str, *, status: int | None = None) -> None:
        super().__init__(f"{url}: {cause}")
        self.url = url
        self.cause = cause
        self.status = status

    def __reduce__(self) -> tuple[object, ...]:
        # keyword arguments survive pickling (Ray ships errors between processes)
        return (_fetch_error, (self.url, self.cause, self.status))


def _fetch_error(url: str, cause: str, status: int | None) -> FetchError:
    return FetchError(url, cause, status=status)


class BudgetUnavailable(PipelinesError, ConnectionError):
    """The shared budget's store (Redis) cannot be reached.

    Raised at start (the command line exits 2). Lost mid-run, calls wait and
    reconnect with backoff instead: a shared budget never falls back to unlimited.
    """


class CacheUnavailable(PipelinesError, ConnectionError):
    """The shared LLM cache's store (Redis) cannot be reached when a run or service starts.

    Raised at start (the command line exits 2), so a mistyped ``--cache`` URL
    does not quietly send every call to the model. Lost mid-run, lookups miss
    and updates are skipped instead (one warning per outage): the cache saves
    money, it never fails a call.
    """


class WorkersLost(PipelinesError, RuntimeError):
    """Every Ray worker of a run died past its restarts (``--engine ray``).

    The records written so far stay; running the same command again resumes.
    """


class OutputWriteError(PipelinesError, OSError):
    """A run's records, summary, manifest or table cannot be written: a full disk, a quota.

    The run stops at once (the items in flight are cancelled: their records
    could not be kept either). The records written before stay; a line the
    full disk cut short is dropped when the run resumes (the command line
    exits 4; the same command, once there is room, resumes).

    Attributes:
        path: the file that could not be written.
        cause: the system's reason (``"No space left on device"``).
    """

    def __init__(self, path: str, cause: str) -> None:
        super().__init__(f"{path}: cannot be written ({cause})")
        self.path = path
        self.cause = cause

    def __reduce__(self) -> tuple[object, ...]:
        return (OutputWriteError, (self.path, self.cause))

    @classmethod
    def of(cls, path: object, exc: OSError) -> OutputWriteError:
        """The error for ``exc``, raised writing ``path``."""
        return cls(str(path), exc.strerror or type(exc).__name__)
