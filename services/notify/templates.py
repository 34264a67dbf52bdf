"""Message templates, kept in files under templates/<locale>/:

  <name>.txt        first line the subject, then the text (every channel)
  <name>.md         optional markdown (WeChat Work)
  <name>.html       optional HTML (email); otherwise the text, escaped, becomes the HTML part
  <name>.voice.txt  optional text-to-speech script (voice calls)

plus labels.toml (the words facts are made of), laid over shared/locale/<locale>.toml."""

from __future__ import annotations

import html
import re
import string
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from shared.labels import LOCALE_DIR

TEMPLATE_DIR = Path(__file__).with_name("templates")
_URL = re.compile(r"https?://[^\s<>\"'，。）]+")


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str
    markdown: str | None = None
    voice: str | None = None


@cache
def _template(locale: str, name: str, suffix: str) -> string.Template | None:
    path = TEMPLATE_DIR / locale / f"{name}{suffix}"
    return string.Template(path.read_text(encoding="utf-8")) if path.exists() else None


@cache
def labels(locale: str = "zh-CN") -> dict[str, dict[str, str]]:
    """Shared labels (needs, urgencies, districts, reasons) with notify's own laid over them."""
    merged: dict[str, dict[str, str]] = {}
    for path in (LOCALE_DIR / f"{locale}.toml", TEMPLATE_DIR / locale / "labels.toml"):
        if path.exists():
            for section, values in tomllib.loads(path.read_text(encoding="utf-8")).items():
                merged.setdefault(section, {}).update({str(k): str(v) for k, v in values.items()})
    return merged


def _as_html(subject: str, text: str) -> str:
    paragraphs = []
    for block in text.strip().split("\n\n"):
        lines = [
            _URL.sub(lambda m: f'<a href="{m.group()}">{m.group()}</a>', html.escape(line))
            for line in block.splitlines()
        ]
        paragraphs.append("<p>" + "<br>\n".join(lines) + "</p>")
    return (
        f'<!doctype html>\n<html><head><meta charset="utf-8"><title>{html.escape(subject)}</title>'
        f"</head><body>\n<h3>{html.escape(subject)}</h3>\n"
        + "\n".join(paragraphs)
        + "\n</body></html>\n"
    )


def render(name: str, facts: dict[str, str], locale: str = "zh-CN") -> Rendered:
    """Fill a template; a missing fact is an error here, not a `$gap` in someone's SMS."""
    main = _template(locale, name, ".txt")
    if main is None:
        raise FileNotFoundError(f"no template {locale}/{name}.txt")
    subject, _, body = main.substitute(facts).partition("\n")
    subject, text = subject.strip(), body.strip() + "\n"
    markdown = _template(locale, name, ".md")
    voice = _template(locale, name, ".voice.txt")
    page = _template(locale, name, ".html")
    escaped = {k: html.escape(v) for k, v in facts.items()}
    return Rendered(
        subject=subject,
        text=text,
        html=page.substitute(escaped) if page else _as_html(subject, text),
        markdown=markdown.substitute(facts).strip() + "\n" if markdown else None,
        voice=" ".join(voice.substitute(facts).split()) if voice else None,
    )
