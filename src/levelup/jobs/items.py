"""A job's items in transactions of their own, so one bad item never holds back the others.

Items go in batches (one transaction each); a batch that fails is retried an item at a time, so
only the bad items fail. They are logged with the cause and raised together as
:class:`ItemsFailed` once every other item is done: the registry reports it for the program, and
the next run tries them again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TypeVar

logger = logging.getLogger("levelup.jobs")

T = TypeVar("T")
R = TypeVar("R")


class ItemsFailed(RuntimeError):
    """Some items of a job failed; the others were done."""


def in_batches(items: Sequence[T], do: Callable[[Sequence[T]], R], *, size: int, what: str) -> list[R]:
    """``do`` (which owns its transaction) over ``items`` in batches of ``size``; what each call returned."""
    done: list[R] = []
    failed: list[str] = []
    for start in range(0, len(items), size):
        chunk = items[start : start + size]
        try:
            done.append(do(chunk))
            continue
        except Exception as exc:
            if len(chunk) == 1:
                _failed(what, chunk[0], exc, failed)
                continue
            logger.warning("a batch of %s failed; retrying its items one at a time", what, exc_info=True)
        for item in chunk:
            try:
                done.append(do([item]))
            except Exception as exc:
                _failed(what, item, exc, failed)
    if failed:
        raise ItemsFailed(f"{len(failed)} {what} failed ({'; '.join(failed[:3])})")
    return done


def _failed(what: str, item: object, exc: Exception, failed: list[str]) -> None:
    logger.error("%s: %r failed", what, item, exc_info=exc)
    failed.append(f"{item!r}: {type(exc).__name__}: {exc}")
