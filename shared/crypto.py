"""Encryption of personal data at rest (AES-256-GCM, from the `cryptography` package).

Each value is bound, as associated data, to the document and field it belongs to, so a
ciphertext copied into another case or field does not decrypt.
"""

from __future__ import annotations

import base64
import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "enc:v1:"
NONCE_BYTES = 12


class UnreadableField(ValueError):
    """A sealed value that this key cannot open (wrong key, wrong place, or tampered)."""


class FieldCipher:
    def __init__(self, secret: str) -> None:
        # The configured secret may be any high-entropy string; SHA-256 makes it a 256-bit key.
        self._aead = AESGCM(hashlib.sha256(secret.encode()).digest())

    def seal(self, value: str, context: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, value.encode(), context.encode())
        return PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, sealed: str, context: str) -> str:
        if not sealed.startswith(PREFIX):
            raise UnreadableField(f"{context}: not a sealed value")
        raw = base64.urlsafe_b64decode(sealed[len(PREFIX) :])
        try:
            plain = self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], context.encode())
        except InvalidTag as exc:
            raise UnreadableField(f"{context}: cannot be opened with this key") from exc
        return plain.decode()

    def seal_optional(self, value: str | None, context: str) -> str | None:
        return None if value is None else self.seal(value, context)

    def open_optional(self, sealed: str | None, context: str) -> str | None:
        return None if sealed is None else self.open(sealed, context)
