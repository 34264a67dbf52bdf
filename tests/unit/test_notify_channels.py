"""Signatures against published test vectors, the retry policy, and the channel registry."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from services.notify.channels import ADAPTERS, ChannelInfo, OutboundMessage, SendResult
from services.notify.channels.ratelimit import RateLimited
from services.notify.channels.registry import build_channels
from services.notify.channels.signing import tc3_authorization, webhook_headers, webhook_signature
from services.notify.channels.sms import e164
from services.notify.domain import Context, Defaults, plan
from services.notify.retry import Fallback, GiveUp, Retry, RetryPolicy, Step, after_failure
from services.notify.settings import NotifySettings
from services.notify.templates import labels
from shared.contracts import AssignedHelper, CaseAccepted, Contact, DisabilityCategory, HelperKind
from shared.people import PersonalData
from shared.topology import retry_delays_ms

# ------------------------------------------------------------------ signatures


def test_tc3_signature_reproduces_tencent_clouds_documented_example() -> None:
    # "Signature v3" in Tencent Cloud's API documentation: CVM DescribeInstances, 2019-02-25.
    payload = (
        b'{"Limit": 1, "Filters": [{"Values": ["\\u672a\\u547d\\u540d"], "Name": "instance-name"}]}'
    )
    authorization = tc3_authorization(
        secret_id="AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE",
        secret_key="Gu5t9xGARNpq86cd98joQYCN3EXAMPLE",
        service="cvm",
        host="cvm.tencentcloudapi.com",
        timestamp=1551113065,
        payload=payload,
    )
    assert authorization == (
        "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/2019-02-25/cvm/"
        "tc3_request, SignedHeaders=content-type;host, "
        "Signature=72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168"
    )


def test_webhook_signature_reproduces_the_standard_webhooks_test_vector() -> None:
    signature = webhook_signature(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        1614265330,
        b'{"test": 2432232314}',
    )
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_reference_library_accepts_our_headers_and_rejects_a_tampered_body() -> None:
    import time

    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"type":"case.status"}'
    headers = webhook_headers(secret, "msg_1", int(time.time()), body)
    assert Webhook(secret).verify(body, headers) == {"type": "case.status"}
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(b'{"type":"case.status "}', headers)
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "QUJD" * 8).verify(body, headers)


def test_weak_or_malformed_webhook_secrets_are_refused() -> None:
    with pytest.raises(ValueError, match="base64"):
        webhook_signature("whsec_not base64!", "m", 1, b"")
    with pytest.raises(ValueError, match="24"):
        webhook_signature("whsec_c2hvcnQ=", "m", 1, b"")


@pytest.mark.parametrize(
    ("phone", "expected"),
    [
        ("13800138000", "+8613800138000"),
        ("+86 138-0013-8000", "+8613800138000"),
        ("8613800138000", "+8613800138000"),
        ("+85291234567", "+85291234567"),
    ],
)
def test_phone_numbers_are_sent_in_e164(phone: str, expected: str) -> None:
    assert e164(phone) == expected


# ------------------------------------------------------------------ retries

POLICY = RetryPolicy(max_attempts=3, delays_ms=(1000, 2000))


def test_a_retryable_failure_waits_in_the_next_delay_queue_with_jitter_below_its_ttl() -> None:
    first = after_failure(Step(), True, routes=2, policy=POLICY, draw=0.0)
    assert first == Retry(Step(0, 2, 2), delay_ms=1000, expiration_ms=1000)
    second = after_failure(Step(0, 2, 2), True, routes=2, policy=POLICY, draw=0.5)
    assert second == Retry(Step(0, 3, 3), delay_ms=2000, expiration_ms=1500)


def test_after_the_last_attempt_on_a_channel_the_next_channel_is_tried_at_once() -> None:
    assert after_failure(Step(0, 3, 3), True, 2, POLICY, 0.5) == Fallback(Step(1, 4, 1))


def test_a_permanent_failure_skips_the_retries() -> None:
    assert after_failure(Step(), False, 2, POLICY, 0.5) == Fallback(Step(1, 2, 1))


def test_after_the_last_channel_the_message_is_given_up() -> None:
    assert after_failure(Step(1, 6, 3), True, 2, POLICY, 0.5) == GiveUp()


def test_backoff_doubles_up_to_a_cap_one_queue_per_retry() -> None:
    assert retry_delays_ms(5, 4) == (5000, 10000, 20000)
    assert retry_delays_ms(1000, 4, cap_s=1500) == (1_000_000, 1_500_000, 1_500_000)
    assert retry_delays_ms(1, 1) == ()


# ------------------------------------------------------------------ the registry


def settings(**env: Any) -> NotifySettings:
    return NotifySettings(**{"CARERELAY_ENV": "test", **env})


def test_channels_are_built_from_settings_and_rate_limited_where_configured() -> None:
    channels = build_channels(
        settings(
            SMS_PROVIDER="generic",
            SMS_GATEWAY_URL="http://127.0.0.1:1/sms",
            CALL_CENTRE_URL="http://127.0.0.1:1/calls",
            SMTP_HOST="127.0.0.1",
        )
    )
    assert set(channels) == {"wechat_work", "email", "sms", "voice", "console"}
    assert isinstance(channels["sms"], RateLimited) and channels["sms"].info.reaches == "phone"
    assert not isinstance(channels["email"], RateLimited)


def test_tencent_sms_needs_its_credentials() -> None:
    with pytest.raises(ValueError, match="TENCENT_SMS_SECRET_ID"):
        build_channels(settings(SMS_PROVIDER="tencent"))


def test_console_is_off_in_production_so_undelivered_messages_are_dead_lettered() -> None:
    production = settings(
        CARERELAY_ENV="production",
        AMQP_URL="amqp://u:p@rabbit/",
        PERSON_KEY_SECRET="k" * 32,
        PII_ENCRYPTION_KEY="p" * 32,
    )
    assert "console" not in build_channels(production)


def test_hotline_callbacks_are_configured_per_source_and_secrets_stay_out_of_reprs() -> None:
    s = settings(
        HOTLINE_CALLBACKS='{"12345-wuhan": {"url": "https://hotline.example/cb", '
        '"secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}}'
    )
    assert set(build_channels(s)) >= {"hotline"}
    assert "MfKQ9r8" not in repr(s) and "MfKQ9r8" not in str(s.hotline_endpoints())


def test_a_bad_callback_secret_is_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match="secret"):
        settings(HOTLINE_CALLBACKS='{"x": {"url": "https://h.example", "secret": "plain"}}')


class PagerChannel:
    """A channel the registry has never heard of: one class, nothing else changed."""

    name = "pager"
    info: ClassVar[ChannelInfo] = ChannelInfo(name, reaches="phone", medium="text")

    @classmethod
    def from_settings(cls, settings: Any) -> PagerChannel:
        return cls()

    async def send(self, message: OutboundMessage) -> SendResult:
        return SendResult(ok=True)

    async def aclose(self) -> None:
        return None


def test_a_new_channel_is_one_adapter_class_and_planning_uses_it_unchanged() -> None:
    channels = build_channels(settings(), (*ADAPTERS, PagerChannel))
    ctx = Context(labels(), Defaults(), {n: c.info for n, c in channels.items()})
    person = PersonalData(
        name="王",
        phone="13800138000",
        carer_phone=None,
        id_number=None,
        certificate_number=None,
        address="某地",
        description="",
        disability_category=DisabilityCategory.hearing,
        disability_grade=2,
        preferred_channel=None,
    )
    event = CaseAccepted(
        case_id="c1",
        offer_id="o1",
        helper=AssignedHelper(helper_id="h1", kind=HelperKind.volunteer, name="李"),
    )
    [details, arranged] = plan(event, ctx, Contact(phone="13900001111"), person, "routine")
    assert [r.channel for r in arranged.routes] == ["pager"]
    assert details.routes[0].channel == "pager"
