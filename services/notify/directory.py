"""Helpers' contact details, kept in process so the hot path (case.assigned -> the helper's
message recorded) reads nothing: loaded at start, refreshed on `registry.changed` and
periodically; a helper not yet known is read once by id."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from shared.contracts import Contact

Load = Callable[[list[str] | None], Awaitable[dict[str, Contact]]]


class HelperDirectory:
    def __init__(self, load: Load) -> None:
        self._load = load
        self._contacts: dict[str, Contact] = {}

    def __len__(self) -> int:
        return len(self._contacts)

    async def reload(self) -> None:
        self._contacts = await self._load(None)

    async def refresh(self, helper_ids: list[str]) -> None:
        found = await self._load(helper_ids)
        for helper_id in helper_ids:
            if helper_id in found:
                self._contacts[helper_id] = found[helper_id]
            else:
                self._contacts.pop(helper_id, None)

    async def contact(self, helper_id: str) -> Contact:
        known = self._contacts.get(helper_id)
        if known is None:
            await self.refresh([helper_id])
            known = self._contacts.get(helper_id, Contact())
        return known
