"""Message templates, kept in files (templates/<locale>/<name>.txt): first line the subject."""

from __future__ import annotations

import string
from dataclasses import dataclass
from functools import cache
from pathlib import Path

TEMPLATE_DIR = Path(__file__).with_name("templates")


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str


@cache
def _template(locale: str, name: str) -> string.Template:
    return string.Template((TEMPLATE_DIR / locale / f"{name}.txt").read_text(encoding="utf-8"))


def render(name: str, facts: dict[str, str], locale: str = "zh-CN") -> Rendered:
    """Fill a template; a missing fact is an error here, not a `$gap` in someone's SMS."""
    subject, _, body = _template(locale, name).substitute(facts).partition("\n")
    return Rendered(subject=subject.strip(), text=body.strip() + "\n")
