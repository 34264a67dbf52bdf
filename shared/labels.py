"""Human labels for codes (needs, urgencies, districts, reasons), per locale, from files."""

from __future__ import annotations

import tomllib
from functools import cache
from pathlib import Path

LOCALE_DIR = Path(__file__).with_name("locale")


@cache
def labels(locale: str = "zh-CN") -> dict[str, dict[str, str]]:
    raw = tomllib.loads((LOCALE_DIR / f"{locale}.toml").read_text(encoding="utf-8"))
    return {section: {str(k): str(v) for k, v in values.items()} for section, values in raw.items()}


def district_name(division_code: str, locale: str = "zh-CN") -> str:
    county = division_code[:6]
    return labels(locale)["division"].get(county, county)
