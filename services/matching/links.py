"""Signed links a helper can open from an SMS to accept or decline an offer."""

from __future__ import annotations

from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeSerializer


@dataclass(frozen=True)
class OfferRef:
    case_id: str
    offer_id: str


class OfferLinks:
    def __init__(self, secret: str, base_url: str) -> None:
        self._serializer = URLSafeSerializer(secret, salt="carerelay.offer")
        self._base = base_url.rstrip("/")

    def token(self, case_id: str, offer_id: str) -> str:
        return str(self._serializer.dumps([case_id, offer_id]))

    def url(self, case_id: str, offer_id: str) -> str:
        return f"{self._base}/v1/offers/{self.token(case_id, offer_id)}"

    def read(self, token: str) -> OfferRef | None:
        """The offer a token names, or None if it was not signed by us."""
        try:
            case_id, offer_id = self._serializer.loads(token)
        except (BadSignature, ValueError, TypeError):
            return None
        return OfferRef(str(case_id), str(offer_id))
