"""Sibling tasks of which the first failure ends all: the part lanes of one object."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from typing import Any

from transfer.exceptions import Cancelled, ItemFailed, LeaseLost


async def run_lanes(lanes: list[Coroutine[Any, Any, None]]) -> None:
    """Run the lanes as sibling tasks; the first failure cancels the others and is raised
    (the most telling one, if several failed together). A cancellation of the caller wins
    over failures of lanes that it cancelled."""
    if not lanes:
        return
    caller = asyncio.current_task()
    assert caller is not None
    cancelled_before = caller.cancelling()
    failure: BaseException | None = None
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(lane) for lane in lanes]
            # Waiting in the body, not in TaskGroup.__aexit__: a lane failing there leaves
            # Python 3.11's TaskGroup's own cancel request counted on the caller.
            await asyncio.wait(tasks)
    except BaseExceptionGroup as group:
        if caller.cancelling() > cancelled_before:
            raise asyncio.CancelledError from None
        failure = _most_telling(group.exceptions)
    if failure is not None:
        raise failure  # outside the handler, so its context stays where it was raised


def _most_telling(errors: Sequence[BaseException]) -> BaseException:
    """The error the item's handling must act on: a stop before a failure of the item,
    and a failure of the item before one that may pass on a retry."""
    for kind in (Cancelled, LeaseLost, ItemFailed):
        for error in errors:
            if isinstance(error, kind):
                return error
    return errors[0]
