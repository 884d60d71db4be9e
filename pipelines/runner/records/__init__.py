"""The records file of a run: append-only JSON lines that belong to their run.

A record is written with one ``write`` of a whole line and flushed, so after a
kill the file holds whole lines, except at most a partial last one, which a
resume cuts off.

An output file belongs to its run. Beside ``OUTPUT`` (the records, one JSON
object a line, nothing else, so any JSON-lines reader keeps working):

- ``OUTPUT.manifest.json``: the :class:`RunManifest` (chain fingerprint,
  model, pipeline, input, sessions), written atomically;
- ``OUTPUT.lock``: held with ``fcntl.flock`` while a run writes, holding its
  pid; the kernel drops the lock when the process dies, even by ``kill -9``;
- ``OUTPUT.summary.json``: the whole run's totals (:func:`whole_run_summary`),
  written atomically at the end of each session;
- ``OUTPUT.batches.json``: with the Batch API, the batches the run submitted
  (:mod:`lc_async_pipelines.runner.batch`), so a resume waits on them
  instead of paying twice.

An ``OUTPUT`` ending in ``.csv`` or ``.parquet`` is a table: the records are
kept beside it in ``OUTPUT.records.jsonl`` (resumed as above), and the table
is written from them, whole, at the end of each session (:func:`write_table`).

:func:`open_run` takes the lock, refuses a file that is not ours or belongs to
another run (changing nothing), moves an old run aside on restart (never
deletes), and on resume compacts the records. Every rewrite is a temp file,
``fsync``, ``os.replace``: a ``kill -9`` at any moment leaves the old file or
the new one, whole, and never loses a done record.
"""

from lc_async_pipelines.runner.records.files import lock_holder, write_atomic
from lc_async_pipelines.runner.records.manifest import (
    MANIFEST_FORMAT,
    RunManifest,
    chain_fingerprint,
)
from lc_async_pipelines.runner.records.paths import (
    TABLE_FORMATS,
    batches_path,
    lanes_path,
    lock_path,
    manifest_path,
    records_path,
    summary_path,
)
from lc_async_pipelines.runner.records.run_file import PriorTotals, RunFile, open_run
from lc_async_pipelines.runner.records.scan import done_ids, prepare_resume
from lc_async_pipelines.runner.records.table import (
    PARQUET_HINT,
    TableInfo,
    check_table_format,
    write_table,
)
from lc_async_pipelines.runner.records.totals import RunTotals, run_totals, whole_run_summary

__all__ = [
    "MANIFEST_FORMAT",
    "PARQUET_HINT",
    "TABLE_FORMATS",
    "PriorTotals",
    "RunFile",
    "RunManifest",
    "RunTotals",
    "TableInfo",
    "batches_path",
    "chain_fingerprint",
    "check_table_format",
    "done_ids",
    "lanes_path",
    "lock_holder",
    "lock_path",
    "manifest_path",
    "open_run",
    "prepare_resume",
    "records_path",
    "run_totals",
    "summary_path",
    "whole_run_summary",
    "write_atomic",
    "write_table",
]
