"""The in-process view of the registry, so candidate search never scans the database."""

from __future__ import annotations

from dataclasses import replace

from shared.storage import Document

from .domain import Helper


class HelperIndex:
    def __init__(self) -> None:
        self._helpers: dict[str, Helper] = {}

    def replace_all(self, documents: list[Document]) -> None:
        self._helpers = {doc["_id"]: Helper.of(doc) for doc in documents}

    def snapshot(self) -> list[Helper]:
        return list(self._helpers.values())

    def get(self, helper_id: str) -> Helper | None:
        return self._helpers.get(helper_id)

    def adjust_load(self, helper_id: str, delta: int) -> None:
        helper = self._helpers.get(helper_id)
        if helper is not None:
            self._helpers[helper_id] = replace(helper, load=max(0, helper.load + delta))

    def mark_full(self, helper_id: str) -> None:
        helper = self._helpers.get(helper_id)
        if helper is not None:
            self._helpers[helper_id] = replace(helper, load=helper.capacity)

    def __len__(self) -> int:
        return len(self._helpers)
