"""Administrative division codes (GB/T 2260 and the 9/12-digit township and village codes)."""

from __future__ import annotations


def jurisdiction_prefix(code: str) -> str:
    """The prefix every division inside a jurisdiction starts with: `420100` (a city) -> `4201`,
    `420000` (a province) -> `42`, `420103` (a county) -> `420103`."""
    prefix = code
    while len(prefix) > 2 and len(prefix) <= 6 and prefix.endswith("00"):
        prefix = prefix[:-2]
    return prefix


def covers(jurisdiction: str, division: str) -> bool:
    """Whether a jurisdiction code covers a division: `420100` covers `420103001`."""
    return division.startswith(jurisdiction_prefix(jurisdiction))


def county_of(division: str) -> str:
    """The county-level (6-digit) code of any division: the most a metric label may show."""
    return division[:6]
