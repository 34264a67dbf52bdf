"""Notify's HTTP side: delivery receipts from the SMS gateway."""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import APIRouter, Body, HTTPException, Query
from pydantic import BaseModel, Field

from .usecases import Notify


class GatewayReceipt(BaseModel):
    """The generic gateway's receipt: the `message_id` it answered the send with."""

    message_id: str = Field(max_length=128)
    status: str = Field(description="delivered, or anything else for not delivered")
    error: str = Field(default="", max_length=200)


class TencentReceipt(BaseModel):
    """One entry of a Tencent Cloud SMS status report (短信下发状态通知)."""

    sid: str = Field(max_length=128)
    report_status: str
    errmsg: str = Field(default="", max_length=200)


def receipts_router(notify: Notify, provider: str, token: str | None) -> APIRouter:
    router = APIRouter(prefix="/v1/receipts", tags=["receipts"])

    def check(given: str | None) -> None:
        if token is not None and not hmac.compare_digest(given or "", token):
            raise HTTPException(status_code=401, detail="bad or missing token")

    @router.post("/sms", summary="Delivery receipts from the SMS gateway (Tencent or generic)")
    async def sms(
        body: Any = Body(...),  # noqa: B008 - FastAPI's way to take a raw JSON body
        token: str | None = Query(default=None),
    ) -> dict[str, Any]:
        check(token)
        entries = body if isinstance(body, list) else [body]
        matched = 0
        for entry in entries:
            if provider == "tencent":
                tencent = TencentReceipt.model_validate(entry)
                ok = tencent.report_status == "SUCCESS"
                matched += await notify.receipt("sms", f"sms:{tencent.sid}", ok, tencent.errmsg)
            else:
                generic = GatewayReceipt.model_validate(entry)
                ok = generic.status == "delivered"
                matched += await notify.receipt(
                    "sms", f"sms:{generic.message_id}", ok, generic.error
                )
        if provider == "tencent":
            return {"result": 0, "errmsg": "OK"}
        return {"received": len(entries), "matched": matched}

    return router
