"""The items a run starts: each id once, the resumed ones left out, up to ``--limit``."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator

from lc_async_pipelines.runner.inputs import Item

__all__ = ["fresh_items"]


def fresh_items(
    items: Iterable[Item], skip: Collection[str] | None, limit: int | None
) -> Iterator[Item]:
    """Yield each item id once, leaving out ``skip``, until ``limit`` distinct ids were read.

    Lazy: the next item is read only when asked for, so a runner reads no
    further into the input than its window. Skipped ids count towards
    ``limit`` (``--limit N`` covers the first N items, done or not).
    """
    source = iter(items)
    seen: set[str] = set()
    while limit is None or len(seen) < limit:
        item = next(source, None)
        if item is None:
            return
        if item.id in seen:
            continue
        seen.add(item.id)
        if skip and item.id in skip:
            continue
        yield item
