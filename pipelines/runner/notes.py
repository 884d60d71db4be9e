"""Facts a chain notes about one item for its record: :class:`ItemNotes`.

A chain raises a LangChain custom event named :data:`NOTE_EVENT`
(``adispatch_custom_event``, langchain-core's API for events a chain raises
itself) with a dict, e.g. ``{"kind": "news", "kind_guessed": True}`` or
``{"off_task_retries": 1}``; the runner and the service's stream keep them in
the record's ``notes``.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from langchain_core.callbacks import AsyncCallbackHandler

__all__ = ["NOTE_EVENT", "ItemNotes", "add_note"]

NOTE_EVENT = "lc_async_pipelines.note"


def add_note(notes: dict[str, Any], data: object) -> None:
    """Merge one note's ``data`` into ``notes``: whole numbers add up, other values replace.

    ``data`` that is not a dict is ignored, as are its keys that are not
    strings: a note must never fail the item.
    """
    if not isinstance(data, dict):
        return
    for key, value in data.items():
        if not isinstance(key, str):
            continue
        if isinstance(value, int) and not isinstance(value, bool):
            notes[key] = notes.get(key, 0) + value
        else:
            notes[key] = value


class ItemNotes(AsyncCallbackHandler):
    """Collect one item's notes (:data:`NOTE_EVENT` custom events) in :attr:`notes`.

    Like the runner's other per-item handlers it tracks no chains, models or
    tools (``ignore_*``): it takes custom events only, a few an item.
    """

    run_inline = True  # a dict update: no task per event
    ignore_llm = True
    ignore_chat_model = True
    ignore_chain = True
    ignore_retriever = True
    ignore_agent = True
    ignore_retry = True

    def __init__(self) -> None:
        self.notes: dict[str, Any] = {}

    async def on_custom_event(self, name: str, data: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """Merge a :data:`NOTE_EVENT`'s data into :attr:`notes`; other events are not ours."""
        if name == NOTE_EVENT:
            add_note(self.notes, data)
