"""A records file as a table: CSV or Parquet, one row per item, in the input's order.

The columns: ``id``; the input's own columns (its row read again from the
input file, joined by line when it is what the record was made from; else the
record's ``input``: its fields, or one ``input`` column for text); the output
(``output``, or for structured output one ``output.FIELD`` column per
top-level field, nested values as JSON text); then ``error``,
``error_class``, ``attempts``, ``cost_usd``, ``latency_s``, ``ttft_s``,
``queued_s``, ``input_tokens``, ``output_tokens``, ``total_tokens``. An input
column named like one of these is written as ``input.NAME``.

The table is written to ``TABLE.tmp`` and renamed over ``TABLE`` (``fsync``
first), so a reader, or a kill, only ever sees a whole table. The records are
read twice (columns first, then rows), streaming; Parquet (pyarrow, the
``parquet`` extra) is written in row groups.
"""

from __future__ import annotations

import contextlib
import csv
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lc_async_pipelines.errors import ConfigurationError
from lc_async_pipelines.runner.records._table_rows import (
    FlatRow,
    Layout,
    cell_text,
    flat_rows,
    index_records,
)
from lc_async_pipelines.runner.records.files import fsync_dir
from lc_async_pipelines.runner.records.paths import TABLE_FORMATS, staging_path

__all__ = ["PARQUET_HINT", "ROW_GROUP_ROWS", "TableInfo", "check_table_format", "write_table"]

PARQUET_HINT = "Parquet needs pyarrow: pip install 'lc-async-pipelines[parquet]'"
"""What to install for Parquet tables, as the error says it."""

ROW_GROUP_ROWS = 10_000
"""Rows per Parquet row group: what is held in memory while writing one."""


@dataclass(frozen=True)
class TableInfo:
    """What :func:`write_table` wrote.

    Attributes:
        rows: table rows, one per item.
        columns: table columns.
        from_input: rows whose input columns come from the input file.
        from_records: rows whose input columns come from the record's
            ``input`` (no input file, or its row there changed or is gone).
        unreadable: lines of the records file that are not records (a
            partial last line of a run still writing, or killed), skipped.
    """

    rows: int
    columns: int
    from_input: int
    from_records: int
    unreadable: int


def check_table_format(table: Path) -> None:
    """Check that ``table`` names a table this installation can write.

    Raises:
        ConfigurationError: the suffix is not ``.csv`` or ``.parquet``, or it
            is ``.parquet`` and pyarrow is not installed (:data:`PARQUET_HINT`).
    """
    suffix = table.suffix.lower()
    if suffix not in TABLE_FORMATS:
        shown = repr(suffix) if suffix else "no suffix"
        msg = f"{table}: {shown} is not a table format; give a .csv or .parquet file"
        raise ConfigurationError(msg)
    if suffix == ".parquet":
        _pyarrow()


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError as exc:
        raise ConfigurationError(PARQUET_HINT) from exc
    return pyarrow


def write_table(records: Path, table: Path, *, input_path: Path | None = None) -> TableInfo:
    """Write the table of ``records`` to ``table`` (``.csv`` or ``.parquet``), atomically.

    Each item once (its done record before a failed one), in input order
    (the records' ``line``); see the module for the columns. Memory: about
    40 bytes per record, plus one Parquet row group (:data:`ROW_GROUP_ROWS`).

    Args:
        records: a records file (one JSON record a line); lines that are not
            records (a partial last line) are skipped and counted.
        table: the file to write; replaced whole, never partly.
        input_path: the run's input file, for the input's own columns; None,
            missing or changed: the records' ``input`` stands in.

    Returns:
        What was written.

    Raises:
        ConfigurationError: see :func:`check_table_format`.
        OSError: ``records`` cannot be read or ``table`` written (``table``
            is then as it was).
    """
    check_table_format(table)
    index = index_records(records)
    layout = Layout()
    from_input = rows = 0
    for row in flat_rows(records, index, input_path):
        layout.observe(row)
        rows += 1
        from_input += row.from_input_file
    columns = layout.columns()
    staged = staging_path(table)
    try:
        with staged.open("wb") as fh:
            if table.suffix.lower() == ".csv":
                _write_csv(fh, columns, flat_rows(records, index, input_path))
            else:
                _write_parquet(fh, columns, flat_rows(records, index, input_path))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(staged, table)
    except BaseException:
        with contextlib.suppress(OSError):
            staged.unlink()
        raise
    fsync_dir(table.parent)
    return TableInfo(rows, len(columns), from_input, rows - from_input, index.unreadable)


def _values(row: FlatRow, names: list[str]) -> list[Any]:
    cells = {"id": row.id, **row.inputs, **row.outputs, **row.fixed}
    return [cells.get(name) for name in names]


def _write_csv(fh: Any, columns: list[tuple[str, str]], rows: Iterator[FlatRow]) -> None:
    """CSV: a header row, then one row per item, UTF-8; empty cells for nulls."""
    import io

    names = [name for name, _ in columns]
    text = io.TextIOWrapper(fh, encoding="utf-8", newline="", write_through=True)
    writer = csv.writer(text)
    writer.writerow(names)
    for row in rows:
        writer.writerow([cell_text(value) for value in _values(row, names)])
    text.detach()  # leave ``fh`` open for the caller's fsync


def _write_parquet(fh: Any, columns: list[tuple[str, str]], rows: Iterator[FlatRow]) -> None:
    """Parquet: typed columns (bool, int64, float64, string), :data:`ROW_GROUP_ROWS` a group."""
    pa = _pyarrow()
    types = {"bool": pa.bool_(), "int": pa.int64(), "float": pa.float64(), "str": pa.string()}
    schema = pa.schema([(name, types[kind]) for name, kind in columns])
    names = [name for name, _ in columns]
    text_columns = [i for i, (_, kind) in enumerate(columns) if kind == "str"]
    with pa.parquet.ParquetWriter(fh, schema) as writer:
        batch: list[list[Any]] = [[] for _ in columns]
        for row in rows:
            values = _values(row, names)
            for i in text_columns:  # a str column holds any mix: non-text values as JSON
                if values[i] is not None and not isinstance(values[i], str):
                    values[i] = cell_text(values[i])
            for column, value in zip(batch, values, strict=True):
                column.append(value)
            if len(batch[0]) >= ROW_GROUP_ROWS:
                writer.write_table(_arrow_table(pa, schema, names, batch))
                batch = [[] for _ in columns]
        if batch[0]:
            writer.write_table(_arrow_table(pa, schema, names, batch))


def _arrow_table(pa: Any, schema: Any, names: list[str], batch: list[list[Any]]) -> Any:
    return pa.Table.from_pydict(dict(zip(names, batch, strict=True)), schema=schema)
