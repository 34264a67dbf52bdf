"""SMS over HTTP: a generic JSON gateway, and Tencent Cloud SMS (SendSms, API 3.0).

Chinese SMS providers send only pre-approved templates (短信模板): a message names the
provider's template id and fills its variables in order. `SMS_TEMPLATES_FILE` maps each of
our templates to the provider's id and the facts that fill it."""

from __future__ import annotations

import json
import re
import time
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

import httpx
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from .base import ChannelInfo, OutboundMessage, SendResult, gateway_headers, post
from .signing import tc3_authorization

DEFAULT_TEMPLATES = Path(__file__).parents[1] / "templates" / "sms.toml"
TENCENT_VERSION = "2021-01-11"
TENCENT_RETRYABLE = (
    "InternalError",
    "LimitExceeded",
    "RequestLimitExceeded",
    "ResourceUnavailable",
)


class SmsSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    sms_provider: Literal["", "generic", "tencent"] = Field(
        default="", validation_alias="SMS_PROVIDER"
    )
    sms_templates_file: Path = Field(
        default=DEFAULT_TEMPLATES, validation_alias="SMS_TEMPLATES_FILE"
    )
    sms_timeout_s: float = Field(default=5.0, gt=0, validation_alias="SMS_TIMEOUT_S")
    sms_gateway_url: str | None = Field(default=None, validation_alias="SMS_GATEWAY_URL")
    sms_gateway_token: SecretStr | None = Field(default=None, validation_alias="SMS_GATEWAY_TOKEN")
    sms_sign_name: str = Field(default="CareRelay", validation_alias="SMS_SIGN_NAME")
    tencent_sms_endpoint: str = Field(
        default="https://sms.tencentcloudapi.com", validation_alias="TENCENT_SMS_ENDPOINT"
    )
    tencent_sms_region: str = Field(default="ap-guangzhou", validation_alias="TENCENT_SMS_REGION")
    tencent_sms_secret_id: str = Field(default="", validation_alias="TENCENT_SMS_SECRET_ID")
    tencent_sms_secret_key: SecretStr = Field(
        default=SecretStr(""), validation_alias="TENCENT_SMS_SECRET_KEY"
    )
    tencent_sms_sdk_app_id: str = Field(default="", validation_alias="TENCENT_SMS_SDK_APP_ID")


@dataclass(frozen=True)
class SmsTemplate:
    id: str
    params: tuple[str, ...]


@cache
def sms_templates(path: Path) -> dict[str, SmsTemplate]:
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    return {
        name: SmsTemplate(id=str(entry["id"]), params=tuple(entry.get("params", ())))
        for name, entry in raw.items()
    }


def e164(phone: str) -> str:
    """A mainland mobile number as +86…; numbers already with a country code keep it."""
    digits = re.sub(r"[^\d+]", "", phone)
    if digits.startswith("+"):
        return digits
    if len(digits) == 13 and digits.startswith("86"):
        return f"+{digits}"
    return f"+86{digits}"


class GenericSmsChannel:
    """Any HTTP SMS gateway taking JSON: `{to, text, sign_name, template_id, params,
    reference}` with a bearer token; it answers 2xx with `{"message_id": ...}` and later posts
    receipts to `/v1/receipts/sms` on notify (see README)."""

    name = "sms"
    info: ClassVar[ChannelInfo] = ChannelInfo(name, reaches="phone", medium="text")

    def __init__(self, settings: SmsSettings, client: httpx.AsyncClient | None = None) -> None:
        assert settings.sms_gateway_url is not None
        self._settings = settings
        self._url = settings.sms_gateway_url
        self._templates = sms_templates(settings.sms_templates_file)
        self._client = client or httpx.AsyncClient(timeout=settings.sms_timeout_s)

    @classmethod
    def from_settings(cls, settings: Any) -> GenericSmsChannel | None:
        if settings.sms_provider != "generic" or not settings.sms_gateway_url:
            return None
        return cls(settings)

    def body(self, message: OutboundMessage) -> dict[str, Any]:
        template = self._templates.get(message.template)
        return {
            "to": e164(message.recipient),
            "text": message.text,
            "sign_name": self._settings.sms_sign_name,
            "template_id": template.id if template else None,
            "params": {p: message.params.get(p, "") for p in template.params} if template else {},
            "reference": message.idempotency_key,
        }

    async def send(self, message: OutboundMessage) -> SendResult:
        headers = gateway_headers(message.idempotency_key, self._settings.sms_gateway_token)
        response = await post(self._client, self._url, json=self.body(message), headers=headers)
        if isinstance(response, SendResult):
            return response
        try:
            message_id = str(response.json()["message_id"])
        except (ValueError, KeyError, TypeError):
            return SendResult(ok=False, error="unreadable_answer", retryable=True)
        return SendResult(ok=True, provider_id=f"sms:{message_id}")

    async def aclose(self) -> None:
        await self._client.aclose()


class TencentSmsChannel:
    """Tencent Cloud SMS `SendSms` (version 2021-01-11), signed with TC3-HMAC-SHA256. Receipts
    (状态回执) name the message by its SerialNo, kept as the attempt's provider id."""

    name = "sms"
    info: ClassVar[ChannelInfo] = ChannelInfo(name, reaches="phone", medium="text")

    def __init__(
        self,
        settings: SmsSettings,
        client: httpx.AsyncClient | None = None,
        clock: Any = time.time,
    ) -> None:
        self._settings = settings
        self._templates = sms_templates(settings.sms_templates_file)
        self._client = client or httpx.AsyncClient(timeout=settings.sms_timeout_s)
        self._host = urlsplit(settings.tencent_sms_endpoint).netloc
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: Any) -> TencentSmsChannel | None:
        if settings.sms_provider != "tencent":
            return None
        if not (settings.tencent_sms_secret_id and settings.tencent_sms_sdk_app_id):
            raise ValueError(
                "SMS_PROVIDER=tencent needs TENCENT_SMS_SECRET_ID, _SECRET_KEY and _SDK_APP_ID"
            )
        return cls(settings)

    def body(self, message: OutboundMessage, template: SmsTemplate) -> dict[str, Any]:
        return {
            "PhoneNumberSet": [e164(message.recipient)],
            "SmsSdkAppId": self._settings.tencent_sms_sdk_app_id,
            "SignName": self._settings.sms_sign_name,
            "TemplateId": template.id,
            "TemplateParamSet": [message.params.get(p, "") for p in template.params],
            "SessionContext": message.idempotency_key,
        }

    async def send(self, message: OutboundMessage) -> SendResult:
        template = self._templates.get(message.template)
        if template is None:
            return SendResult(ok=False, error="no_sms_template", retryable=False)
        payload = json.dumps(self.body(message, template), ensure_ascii=False).encode()
        timestamp = int(self._clock())
        s = self._settings
        headers = {
            "Authorization": tc3_authorization(
                secret_id=s.tencent_sms_secret_id,
                secret_key=s.tencent_sms_secret_key.get_secret_value(),
                service="sms",
                host=self._host,
                timestamp=timestamp,
                payload=payload,
            ),
            "Content-Type": "application/json; charset=utf-8",
            "Host": self._host,
            "X-TC-Action": "SendSms",
            "X-TC-Timestamp": str(timestamp),
            "X-TC-Version": TENCENT_VERSION,
            "X-TC-Region": s.tencent_sms_region,
        }
        endpoint = s.tencent_sms_endpoint
        response = await post(self._client, endpoint, content=payload, headers=headers)
        if isinstance(response, SendResult):
            return response
        try:
            answer = response.json()["Response"]
            error = answer.get("Error")
            code = str(error["Code"]) if error else str(answer["SendStatusSet"][0]["Code"])
        except (ValueError, KeyError, IndexError, TypeError):
            return SendResult(ok=False, error="unreadable_answer", retryable=True)
        if code == "Ok":
            serial = str(answer["SendStatusSet"][0].get("SerialNo", ""))
            return SendResult(ok=True, provider_id=f"sms:{serial}")
        retryable = code.startswith(TENCENT_RETRYABLE) or code == "AuthFailure.SignatureExpire"
        return SendResult(ok=False, error=code[:80], retryable=retryable)

    async def aclose(self) -> None:
        await self._client.aclose()
