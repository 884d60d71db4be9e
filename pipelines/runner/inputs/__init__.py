"""Read run items lazily from ``.jsonl``, ``.json``, ``.csv`` or ``.txt`` files.

An item's input is one text field of its row, or with ``whole_rows=True`` the
whole row as an object, so that a prompt can take several variables from it.
Each row becomes an :class:`Item` with a stable id: the row's id field when it
has one, else a hash of the input, so identical inputs share one id.

Careless and hostile files never raise anything but
:class:`~lc_async_pipelines.errors.InputError`:

* A row that cannot be used becomes an :class:`Item` whose ``error`` starts
  with ``"line N: "`` and names the cause; the runner writes it as an error
  record and goes on. Causes: malformed JSON, missing field, empty text, bytes
  that are not UTF-8 or NUL bytes (only that row: ``.csv`` rows are decoded one
  by one), a row over ``max_row_bytes`` (skipped while reading, never held
  whole in memory), a ``.csv`` row with more or fewer fields than the header,
  a ``.csv`` record that cannot be split cleanly (a quote that never closes
  before the end of the file, or text after a closing quote: its first line
  is the error and the lines after it are read again as rows, so rows are
  never merged silently), a ``.txt`` line holding a bare carriage return,
  and an id already used by an earlier row with a different input.
* A row repeating an earlier row (same id, same input) is skipped and counted
  in :attr:`ItemReader.duplicates`.
* A problem with the file as a whole (missing, a directory, unreadable,
  UTF-16, lines ending with a bare carriage return, a ``.json`` that is not
  one array or is over :data:`MAX_JSON_BYTES`, a ``.csv`` header that cannot
  be read or holds NUL bytes, a ``.csv`` with so many unclosed quotes that
  reading past them would take more than twice its lines again) raises
  ``InputError`` with one line naming the file and the cause.

A UTF-8 byte-order mark is skipped in every format. ``.csv`` files may be
comma, semicolon, tab or pipe separated (guessed with :class:`csv.Sniffer` from
the first :data:`CSV_SNIFF_BYTES` bytes and checked against the header line,
else comma), with LF or CRLF line ends and quoted multi-line fields.
"""

from lc_async_pipelines.runner.inputs._csv import CSV_SNIFF_BYTES
from lc_async_pipelines.runner.inputs._rows import DEFAULT_FIELDS
from lc_async_pipelines.runner.inputs.items import Item, ItemReader, item_id_for
from lc_async_pipelines.runner.inputs.read import (
    DEFAULT_MAX_ROW_BYTES,
    FORMATS,
    MAX_JSON_BYTES,
    count_items,
    read_items,
)

__all__ = [
    "CSV_SNIFF_BYTES",
    "DEFAULT_FIELDS",
    "DEFAULT_MAX_ROW_BYTES",
    "FORMATS",
    "MAX_JSON_BYTES",
    "Item",
    "ItemReader",
    "count_items",
    "item_id_for",
    "read_items",
]
