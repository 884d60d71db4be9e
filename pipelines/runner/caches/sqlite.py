"""A SQLite LLM cache for LangChain chat models: an identical call is never paid twice.

langchain-community's ``SQLiteCache`` would do, but langchain-community warns
at import that it is sunset and no longer maintained, so this is the same idea
over the standard library's ``sqlite3`` behind langchain-core's ``BaseCache``.
Set it on the model (``llm.model_copy(update={"cache": SQLiteCache(path)})``)
or globally (``langchain_core.globals.set_llm_cache``).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from pathlib import Path
from typing import Any

from langchain_core.caches import RETURN_VAL_TYPE, BaseCache
from langchain_core.load import dumps
from langchain_core.runnables import Runnable

from lc_async_pipelines.runner._attach import update_chat_models
from lc_async_pipelines.runner.caches._codec import load_generation, normalize_llm_string

__all__ = ["SQLiteCache", "with_cache"]

log = logging.getLogger(__name__)

# A full disk (or an I/O error) while storing an answer: the answer is kept
# by its record, only the cache misses it (https://sqlite.org/rescode.html).
_WRITE_FAILURES = frozenset({sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS llm_cache (
    llm TEXT NOT NULL,
    prompt TEXT NOT NULL,
    idx INTEGER NOT NULL,
    generation TEXT NOT NULL,
    PRIMARY KEY (llm, prompt, idx)
)
"""


class SQLiteCache(BaseCache):
    """LangChain LLM cache in one SQLite file, keyed by (model settings, prompt).

    The key is what langchain-core hands the cache: the model's serialized
    settings and call parameters (model name, temperature, ``max_tokens``,
    endpoint; never the API key's value) and the serialized messages. Values are
    the generations, serialized with ``langchain_core.load``. Writes commit at
    once (WAL journal), so a run killed with ``kill -9`` keeps every answer it
    got, and its resume hits the cache for them. An answer that cannot be
    stored (a full disk) is not cached, with one warning: the cache saves
    money, it never fails a call that was paid for.

    Attributes:
        hits: lookups answered from the file in this process.
        misses: lookups that were not.
    """

    def __init__(self, path: str | Path) -> None:
        """Open or create the cache at ``path`` (parent directories are made)."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)
        self.hits = 0
        self.misses = 0
        self._warned = False

    def lookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        """Return the cached generations of this call, or None."""
        with self._lock:
            rows = self._db.execute(
                "SELECT generation FROM llm_cache WHERE llm = ? AND prompt = ? ORDER BY idx",
                (normalize_llm_string(llm_string), prompt),
            ).fetchall()
        if not rows:
            self.misses += 1
            return None
        try:
            generations = [load_generation(row[0]) for row in rows]
        except (ValueError, TypeError, KeyError, json.JSONDecodeError):
            # An entry this version cannot read is a miss, not a failed call.
            self.misses += 1
            return None
        self.hits += 1
        return generations

    def update(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        """Store the generations of one call (replacing any earlier ones)."""
        key = normalize_llm_string(llm_string)
        rows = [(key, prompt, i, dumps(g)) for i, g in enumerate(return_val)]
        try:
            with self._lock, self._db:  # one transaction: committed, or rolled back on error
                self._db.execute(
                    "DELETE FROM llm_cache WHERE llm = ? AND prompt = ?", (key, prompt)
                )
                self._db.executemany("INSERT INTO llm_cache VALUES (?, ?, ?, ?)", rows)
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF not in _WRITE_FAILURES:  # an extended code's primary
                raise
            if not self._warned:  # issue 22: a full disk failed items that had been paid for
                self._warned = True
                log.warning("LLM cache %s cannot store answers (%s); not cached", self.path, exc)

    # SQLite on a local file answers in well under a millisecond: calling it on
    # the loop is cheaper than BaseCache's default hop to a thread pool.
    async def alookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        """Async :meth:`lookup`."""
        return self.lookup(prompt, llm_string)

    async def aupdate(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        """Async :meth:`update`."""
        self.update(prompt, llm_string, return_val)

    def clear(self, **kwargs: Any) -> None:
        """Delete every entry."""
        with self._lock, self._db:
            self._db.execute("DELETE FROM llm_cache")

    def __len__(self) -> int:
        """Return the number of cached generations."""
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM llm_cache").fetchone()[0])

    def close(self) -> None:
        """Close the database file."""
        with self._lock:
            self._db.close()


def with_cache(llm: Runnable[Any, Any], cache: BaseCache) -> Runnable[Any, Any]:
    """Return a copy of ``llm`` whose chat models answer from ``cache`` first.

    ``llm`` is a chat model, optionally bound or with fallbacks; the original
    is left as it was. langchain-core looks the cache up before the model's
    ``rate_limiter`` (``BaseChatModel._agenerate_with_cache``), so hits spend
    no budget.

    Raises:
        TypeError: ``llm`` holds no chat model.
    """
    return update_chat_models(llm, cache=cache)
