"""Who may call the APIs: keys for hotlines, operators and administrators, bound to a source and
to the divisions they may report for and read.

A key is presented as `Authorization: Bearer crk_<key id>_<secret>`. Only a SHA-256 of the
secret is stored: the secret is 256 random bits, so a slow password hash would add nothing.
A key may also require signed bodies (HMAC-SHA256 over `<timestamp>.<body>`), whose secret is
stored sealed because the server must be able to recompute the signature.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from shared.crypto import FieldCipher
from shared.divisions import covers
from shared.storage import API_KEYS, Document

TOKEN = re.compile(r"^crk_([a-z0-9]{6,32})_([A-Za-z0-9_-]{16,128})$")


class Role(StrEnum):
    hotline = "hotline"  # reports for its own source, reads those cases, personal data masked
    operator = "operator"  # a duty officer: reads cases in their districts, personal data shown
    admin = "admin"  # the registry and keys; every district


@dataclass(frozen=True)
class Caller:
    key_id: str
    name: str
    role: Role
    source: str | None
    divisions: tuple[str, ...]
    signing_secret: str | None = None
    require_signature: bool = False

    def covers(self, division_code: str) -> bool:
        return self.role is Role.admin or any(covers(d, division_code) for d in self.divisions)

    def may_read(self, source: str, division_code: str) -> bool:
        if self.role is Role.hotline and source != self.source:
            return False
        return self.covers(division_code)

    @property
    def sees_personal_data(self) -> bool:
        return self.role in (Role.operator, Role.admin)


@dataclass(frozen=True)
class IssuedKey:
    key_id: str
    token: str
    signing_secret: str | None


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_token(token: str) -> tuple[str, str] | None:
    match = TOKEN.match(token)
    return (match.group(1), match.group(2)) if match else None


def _signing_context(key_id: str) -> str:
    return f"api_key:{key_id}:signing"


def key_document(
    *,
    name: str,
    role: Role,
    source: str | None,
    divisions: Sequence[str],
    now: datetime,
    cipher: FieldCipher,
    token: str | None = None,
    require_signature: bool = False,
) -> tuple[Document, IssuedKey]:
    """A new key (random, or from a given token such as the development key) as stored."""
    if role is Role.hotline and not source:
        raise ValueError("a hotline key needs the source it reports as")
    if role is not Role.admin and not divisions:
        raise ValueError("a key needs at least one division code it may act for")
    if token is None:
        token = f"crk_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}"
    parsed = parse_token(token)
    if parsed is None:
        raise ValueError("a key looks like crk_<6-32 lower-case letters or digits>_<16+ chars>")
    key_id, secret = parsed
    signing = f"whsec_{secrets.token_urlsafe(32)}" if require_signature else None
    document: Document = {
        "_id": key_id,
        "name": name,
        "role": role.value,
        "source": source,
        "divisions": list(divisions),
        "secret_sha256": hash_secret(secret),
        "signing_secret": cipher.seal_optional(signing, _signing_context(key_id)),
        "require_signature": require_signature,
        "created_at": now,
        "revoked_at": None,
    }
    return document, IssuedKey(key_id, token, signing)


def caller_of(document: Document, cipher: FieldCipher) -> Caller:
    return Caller(
        key_id=document["_id"],
        name=document["name"],
        role=Role(document["role"]),
        source=document.get("source"),
        divisions=tuple(document.get("divisions", ())),
        signing_secret=cipher.open_optional(
            document.get("signing_secret"), _signing_context(document["_id"])
        ),
        require_signature=bool(document.get("require_signature")),
    )


class KeyStore(Protocol):
    async def add(self, document: Document) -> bool: ...

    async def get(self, key_id: str) -> Document | None: ...

    async def all(self) -> list[Document]: ...

    async def revoke(self, key_id: str, now: datetime) -> bool: ...


class MongoKeyStore:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._keys = db[API_KEYS]

    async def add(self, document: Document) -> bool:
        try:
            await self._keys.insert_one(document)
        except DuplicateKeyError:
            return False
        return True

    async def get(self, key_id: str) -> Document | None:
        return await self._keys.find_one({"_id": key_id})

    async def all(self) -> list[Document]:
        return [d async for d in self._keys.find({}, {"secret_sha256": 0, "signing_secret": 0})]

    async def revoke(self, key_id: str, now: datetime) -> bool:
        result = await self._keys.update_one(
            {"_id": key_id, "revoked_at": None}, {"$set": {"revoked_at": now}}
        )
        return result.modified_count == 1


class Authenticator:
    """Checks bearer tokens. Verified keys are remembered for `cache_s` seconds so the hot path
    does not read the store per request; a revocation takes effect within that time."""

    def __init__(
        self,
        store: KeyStore,
        cipher: FieldCipher,
        cache_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._cipher = cipher
        self._cache_s = cache_s
        self._clock = clock
        self._cache: dict[str, tuple[float, str, Caller | None]] = {}

    async def authenticate(self, token: str) -> Caller | None:
        parsed = parse_token(token)
        if parsed is None:
            return None
        key_id, secret = parsed
        digest = hash_secret(secret)
        cached = self._cache.get(key_id)
        if cached is not None and cached[0] > self._clock():
            _, known_digest, caller = cached
        else:
            document = await self._store.get(key_id)
            usable = document is not None and document.get("revoked_at") is None
            caller = caller_of(document, self._cipher) if usable and document else None
            known_digest = document["secret_sha256"] if usable and document else ""
            self._cache[key_id] = (self._clock() + self._cache_s, known_digest, caller)
        if caller is None or not hmac.compare_digest(digest, known_digest):
            return None
        return caller


SIGNATURE_PREFIX = "v1="


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return SIGNATURE_PREFIX + mac.hexdigest()


def signature_problem(
    secret: str,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    now: float,
    window_s: float,
) -> str | None:
    """Why a signed request is refused, or None when its signature and time are good."""
    if not timestamp or not signature:
        return "this key requires X-CareRelay-Timestamp and X-CareRelay-Signature headers"
    if not timestamp.isdigit():
        return "X-CareRelay-Timestamp must be Unix seconds"
    if abs(now - int(timestamp)) > window_s:
        return f"X-CareRelay-Timestamp is more than {int(window_s)} s from the server's clock"
    expected = sign(secret, timestamp, body)
    if not any(hmac.compare_digest(expected, s.strip()) for s in signature.split(",")):
        return "X-CareRelay-Signature does not match the body"
    return None
