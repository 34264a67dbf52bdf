"""Who hears what, over which channel: pure planning and template rendering."""

from __future__ import annotations

from datetime import UTC, datetime

from services.notify.domain import CONSOLE, EMAIL, WECHAT_WORK, Defaults, Route, plan
from services.notify.templates import render
from shared.contracts import (
    AssignedHelper,
    CaseAssigned,
    CaseEscalated,
    Contact,
    HelperKind,
    Need,
    Urgency,
)
from shared.labels import labels
from shared.pii import mask_address, scrub_digits

NOW = datetime(2022, 11, 22, tzinfo=UTC)
ALL = frozenset({CONSOLE, WECHAT_WORK, EMAIL})
DEFAULTS = Defaults(team_webhook="http://hook/team", duty_desk_webhook="http://hook/duty")
ZH = labels("zh-CN")


def assigned(kind: HelperKind, need: Need = Need.medicine) -> CaseAssigned:
    return CaseAssigned(
        case_id="c1",
        helper=AssignedHelper(helper_id="h1", kind=kind, name="李志愿", distance_km=1.234),
        need=need,
        urgency=Urgency.immediate,
        division_code="420103001",
        received_at=NOW,
    )


def test_volunteer_hears_through_the_team_webhook_first_then_email_then_console() -> None:
    [message] = plan(
        assigned(HelperKind.volunteer),
        Contact(phone="13900001111", email="a@b.cn"),
        ZH,
        DEFAULTS,
        ALL,
    )
    assert message.purpose == "assignment"
    assert message.routes == (
        Route(WECHAT_WORK, "http://hook/team"),
        Route(EMAIL, "a@b.cn"),
        Route(CONSOLE, CONSOLE),
    )
    assert message.mentioned_mobiles == ("13900001111",)


def test_agency_gets_a_work_order_by_email_first() -> None:
    [message] = plan(
        assigned(HelperKind.agency, Need.benefits),
        Contact(email="mzj@example.gov.cn"),
        ZH,
        DEFAULTS,
        ALL,
    )
    assert message.purpose == "work_order"
    assert message.routes[0] == Route(EMAIL, "mzj@example.gov.cn")
    assert message.mentioned_mobiles == ()


def test_escalation_goes_to_the_duty_desk_webhook_with_the_reason() -> None:
    event = CaseEscalated(
        case_id="c1",
        helper=AssignedHelper(helper_id="desk", kind=HelperKind.duty_desk, name="值班室"),
        reason="no_eligible_helper",
        need=Need.food,
        urgency=Urgency.within_24h,
        division_code="420103",
        received_at=NOW,
    )
    [message] = plan(event, Contact(), ZH, DEFAULTS, ALL)
    assert message.routes[0] == Route(WECHAT_WORK, "http://hook/duty")
    text = render(message.template, message.facts).text
    assert "附近没有符合条件的志愿者或机构" in text


def test_unconfigured_channels_are_skipped_and_console_is_always_last() -> None:
    [message] = plan(
        assigned(HelperKind.volunteer),
        Contact(email="a@b.cn"),
        ZH,
        Defaults(),
        frozenset({CONSOLE}),
    )
    assert message.routes == (Route(CONSOLE, CONSOLE),)


def test_helper_message_names_need_district_and_distance_but_no_address() -> None:
    [message] = plan(assigned(HelperKind.volunteer), Contact(), ZH, DEFAULTS, ALL)
    rendered = render(message.template, message.facts)
    assert "买药" in rendered.subject + rendered.text
    assert "江汉区" in rendered.text and "1.2 公里" in rendered.text
    assert "http://127.0.0.1:8000/v1/cases/c1" in rendered.text


def test_idempotency_keys_hold_ids_not_personal_data() -> None:
    [message] = plan(
        assigned(HelperKind.volunteer), Contact(phone="13900001111"), ZH, DEFAULTS, ALL
    )
    key = message.key(message.routes[0])
    assert key == "assignment:volunteer:h1:wechat_work:1"


def test_recorded_recipients_are_masked() -> None:
    assert mask_address("email", "zhang.san@example.org") == "z***@example.org"
    assert mask_address("sms", "13812345678") == "*******5678"
    assert (
        mask_address("wechat_work", "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=S3")
        == "https://qyapi.weixin.qq.com/***"
    )
    assert scrub_digits("call 13812345678 now") == "call *******5678 now"
    assert scrub_digits("电话13812345678，") == "电话*******5678，"
    assert scrub_digits("/v1/cases/2b92d9f5585736fc") == "/v1/cases/2b92d9f5585736fc"
