"""Masking of personal data for anything that is not the send itself (records, logs, views)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

_DIGIT_RUN = re.compile(r"(?<![0-9A-Za-z])\d{7,}(?![0-9A-Za-z])")  # not inside ids


def mask_phone(phone: str) -> str:
    digits = re.sub(r"\D", "", phone)
    return f"{'*' * max(0, len(digits) - 4)}{digits[-4:]}" if digits else "***"


def mask_name(name: str) -> str:
    """张秀英 -> 张**: enough for a caller to recognise, not to identify."""
    return f"{name[:1]}{'*' * max(1, len(name) - 1)}" if name else "***"


def mask_email(address: str) -> str:
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}" if domain else "***"


def mask_url(url: str) -> str:
    """Keep where a webhook goes, hide the secret in its path or query."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/***" if parts.netloc else "***"


def mask_address(channel: str, address: str) -> str:
    if channel == "email":
        return mask_email(address)
    if address.startswith(("http://", "https://")):
        return mask_url(address)
    if channel in ("sms", "voice"):
        return mask_phone(address)
    return address


def scrub_digits(text: str) -> str:
    """Mask any run of seven or more digits (phone, ID and certificate numbers) in free text."""
    return _DIGIT_RUN.sub(lambda m: mask_phone(m.group()), text)
