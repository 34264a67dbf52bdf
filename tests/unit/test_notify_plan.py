"""Who hears what, over which channel: pure planning and template rendering."""

from __future__ import annotations

from datetime import UTC, datetime

from services.notify.channels.base import ChannelInfo
from services.notify.domain import (
    CONSOLE,
    EMAIL,
    HOTLINE,
    SMS,
    VOICE,
    WEBHOOK,
    WECHAT_WORK,
    Context,
    Defaults,
    Route,
    person_channel_order,
    plan,
)
from services.notify.templates import labels, render
from shared.contracts import (
    AssignedHelper,
    CaseAccepted,
    CaseAssigned,
    CaseEscalated,
    CaseResolved,
    Contact,
    ContactChannel,
    DisabilityCategory,
    HelperKind,
    Need,
    Resolution,
    Urgency,
)
from shared.people import PersonalData
from shared.pii import mask_address, scrub_digits

NOW = datetime(2022, 11, 22, tzinfo=UTC)
INFO = {
    CONSOLE: ChannelInfo(CONSOLE, reaches="log"),
    WECHAT_WORK: ChannelInfo(WECHAT_WORK, reaches="group", private=False),
    EMAIL: ChannelInfo(EMAIL, reaches="email"),
    SMS: ChannelInfo(SMS, reaches="phone"),
    VOICE: ChannelInfo(VOICE, reaches="phone", medium="voice"),
    WEBHOOK: ChannelInfo(WEBHOOK, reaches="webhook"),
    HOTLINE: ChannelInfo(HOTLINE, reaches="hotline"),
}
DEFAULTS = Defaults(team_webhook="http://hook/team", duty_desk_webhook="http://hook/duty")
ZH = labels("zh-CN")


def ctx(*channels: str, hotlines: frozenset[str] | None = None) -> Context:
    names = channels or tuple(INFO)
    if hotlines is None:
        hotlines = frozenset({"12345-wuhan"}) if HOTLINE in names else frozenset()
    return Context(ZH, DEFAULTS, {n: INFO[n] for n in names}, hotlines)


OLD = ctx(CONSOLE, WECHAT_WORK, EMAIL)  # the channels of the first release


def assigned(kind: HelperKind, need: Need = Need.medicine) -> CaseAssigned:
    return CaseAssigned(
        case_id="c1",
        source="12345-wuhan",
        external_id="WH-1",
        helper=AssignedHelper(helper_id="h1", kind=kind, name="李志愿", distance_km=1.234),
        need=need,
        urgency=Urgency.immediate,
        division_code="420103001",
        received_at=NOW,
        offer_id="o1",
        respond_url="http://127.0.0.1:8001/v1/offers/tok",
    )


def accepted() -> CaseAccepted:
    return CaseAccepted(
        case_id="c1",
        source="12345-wuhan",
        external_id="WH-1",
        offer_id="o1",
        helper=AssignedHelper(helper_id="h1", kind=HelperKind.volunteer, name="李志愿"),
    )


def person(
    category: DisabilityCategory,
    preferred: ContactChannel | None = None,
    carer_phone: str | None = None,
) -> PersonalData:
    return PersonalData(
        name="张秀英",
        phone="13800138000",
        carer_phone=carer_phone,
        id_number=None,
        certificate_number=None,
        address="江汉区北湖街道某小区3栋2单元401",
        description="",
        disability_category=category,
        disability_grade=1,
        preferred_channel=preferred,
    )


HELPER = Contact(phone="13900001111", email="li@example.org")


def arranged_for(p: PersonalData, context: Context | None = None) -> tuple[Route, ...]:
    messages = plan(accepted(), context or ctx(), HELPER, p, "immediate")
    [message] = [m for m in messages if m.purpose == "arranged"]
    return message.routes


# ------------------------------------------------------------------ helpers


def test_volunteer_hears_through_the_team_webhook_first_then_email_then_console() -> None:
    [message] = plan(assigned(HelperKind.volunteer), OLD, HELPER)
    assert message.purpose == "assignment"
    assert message.routes == (
        Route(WECHAT_WORK, "http://hook/team"),
        Route(EMAIL, "li@example.org"),
        Route(CONSOLE, CONSOLE),
    )
    assert message.mentioned_mobiles == ("13900001111",)


def test_volunteer_offer_goes_by_text_to_their_phone_after_the_group_and_never_by_voice() -> None:
    [offer, _] = plan(assigned(HelperKind.volunteer), ctx(), HELPER)
    assert [r.channel for r in offer.routes] == [WECHAT_WORK, SMS, EMAIL, CONSOLE]


def test_helper_offer_names_need_district_distance_urgency_and_the_link_but_no_address() -> None:
    [message, _] = plan(assigned(HelperKind.volunteer), ctx(), HELPER)
    rendered = render(message.template, message.facts)
    assert "买药" in rendered.subject + rendered.text
    assert "江汉区" in rendered.text and "1.2 公里" in rendered.text
    assert "紧急" in rendered.subject
    assert "http://127.0.0.1:8001/v1/offers/tok" in rendered.text
    assert "地址" in rendered.text and "北湖街道" not in rendered.text


def test_agency_gets_a_work_order_on_its_own_system_first_then_by_email() -> None:
    contact = Contact(email="mzj@example.gov.cn", webhook="https://mzj.example/orders")
    [message, _] = plan(assigned(HelperKind.agency, Need.benefits), ctx(), contact)
    assert message.purpose == "work_order"
    assert message.routes[:2] == (
        Route(WEBHOOK, "https://mzj.example/orders"),
        Route(EMAIL, "mzj@example.gov.cn"),
    )
    assert message.mentioned_mobiles == ()


def test_escalation_goes_to_the_duty_desk_webhook_with_the_reason_in_markdown() -> None:
    event = CaseEscalated(
        case_id="c1",
        helper=AssignedHelper(helper_id="desk", kind=HelperKind.duty_desk, name="值班室"),
        reason="no_eligible_helper",
        need=Need.food,
        urgency=Urgency.within_24h,
        division_code="420103",
        received_at=NOW,
    )
    [message] = plan(event, OLD, Contact())
    assert message.routes[0] == Route(WECHAT_WORK, "http://hook/duty")
    rendered = render(message.template, message.facts)
    assert "附近没有符合条件的志愿者或机构" in rendered.text
    assert rendered.markdown is not None and "附近没有符合条件的志愿者或机构" in rendered.markdown


def test_unconfigured_channels_are_skipped_and_console_is_always_last() -> None:
    [message] = plan(assigned(HelperKind.volunteer), ctx(CONSOLE), Contact(email="a@b.cn"))
    assert message.routes == (Route(CONSOLE, CONSOLE),)


def test_accepted_helper_gets_address_and_number_by_private_channels_only() -> None:
    context = ctx()
    [details, _, _] = plan(accepted(), context, HELPER, person(DisabilityCategory.physical))
    assert [r.channel for r in details.routes] == [SMS, EMAIL]  # no group chat, no log
    text = render(details.template, details.facts).text
    assert "江汉区北湖街道某小区3栋2单元401" in text and "13800138000" in text


def test_personal_details_never_fall_back_to_the_console_log() -> None:
    dev = ctx(CONSOLE, WECHAT_WORK)  # `make run`: no SMS, no email
    [details, arranged] = plan(accepted(), dev, HELPER, person(DisabilityCategory.physical))
    assert details.routes == () and arranged.routes == (), "dead-lettered, not printed"
    [offer] = plan(assigned(HelperKind.volunteer), dev, HELPER)
    assert offer.routes[-1].channel == CONSOLE, "an offer (no personal data) may be printed"


def test_accepted_helper_of_an_intellectual_disability_case_calls_the_carer() -> None:
    p = person(DisabilityCategory.intellectual, carer_phone="13700137000")
    [details, arranged, _] = plan(accepted(), ctx(), HELPER, p)
    assert details.facts["call_number"] == "13700137000"
    assert "照料人" in render(details.template, details.facts).text
    assert arranged.recipient_kind == "carer"
    assert {r.address for r in arranged.routes if r.channel != CONSOLE} == {"13700137000"}


def test_intellectual_disability_without_a_carer_is_contacted_directly() -> None:
    [_, arranged, _] = plan(accepted(), ctx(), HELPER, person(DisabilityCategory.intellectual))
    assert arranged.recipient_kind == "person"


# ------------------------------------------------------------------ the person


def test_blind_person_hears_by_voice_first_then_text() -> None:
    routes = arranged_for(person(DisabilityCategory.visual))
    assert [r.channel for r in routes] == [VOICE, SMS]


def test_deaf_person_gets_text_only_never_a_call() -> None:
    routes = arranged_for(person(DisabilityCategory.hearing, preferred=ContactChannel.voice))
    assert [r.channel for r in routes] == [SMS]


def test_speech_impaired_person_gets_text_only() -> None:
    assert VOICE not in [r.channel for r in arranged_for(person(DisabilityCategory.speech))]


def test_deaf_person_without_a_text_channel_gets_no_call_at_all() -> None:
    routes = arranged_for(person(DisabilityCategory.hearing), ctx(VOICE, HOTLINE))
    assert routes == ()


def test_preferred_channel_wins_where_possible() -> None:
    routes = arranged_for(person(DisabilityCategory.visual, preferred=ContactChannel.sms))
    assert [r.channel for r in routes] == [SMS, VOICE]
    routes = arranged_for(person(DisabilityCategory.physical, preferred=ContactChannel.voice))
    assert [r.channel for r in routes] == [VOICE, SMS]


def test_impossible_preference_is_ignored() -> None:
    routes = arranged_for(person(DisabilityCategory.physical, preferred=ContactChannel.email))
    assert [r.channel for r in routes] == [SMS, VOICE]


def test_carer_gets_text_first_whatever_the_persons_preference() -> None:
    order = person_channel_order(
        DisabilityCategory.mental, ContactChannel.voice, [INFO[VOICE], INFO[SMS]], via_carer=True
    )
    assert [c.name for c in order] == [SMS, VOICE]


def test_person_hears_that_help_is_arranged_who_comes_and_when() -> None:
    messages = plan(accepted(), ctx(), HELPER, person(DisabilityCategory.visual), "immediate")
    [arranged] = [m for m in messages if m.purpose == "arranged"]
    rendered = render(arranged.template, arranged.facts)
    assert "志愿者 李志愿" in rendered.text and "30分钟内" in rendered.text
    assert "尾号1111" in rendered.text and "13900001111" not in rendered.text
    assert rendered.voice is not None and "30分钟内" in rendered.voice
    assert "\n" not in rendered.voice


def test_accepted_event_without_the_person_plans_only_the_hotline_callback() -> None:
    [message] = plan(accepted(), ctx(), HELPER, None)
    assert message.purpose == "status_accepted"


# ------------------------------------------------------------------ the hotline


def test_hotline_hears_each_status_with_its_reference_and_no_helper_name() -> None:
    [_, callback] = plan(assigned(HelperKind.volunteer), ctx(), HELPER)
    assert callback.routes == (Route(HOTLINE, "12345-wuhan"),)
    assert callback.data is not None and callback.data["external_id"] == "WH-1"
    assert callback.data["status"] == "assigned" and callback.data["helper_kind"] == "volunteer"
    text = render(callback.template, callback.facts).text
    assert "WH-1" in text and "志愿者" in text and "李志愿" not in text


def test_hotline_gets_a_closing_report_with_the_resolution() -> None:
    event = CaseResolved(
        case_id="c1", source="12345-wuhan", external_id="WH-1", resolution=Resolution.delivered
    )
    [callback] = plan(event, ctx(), None)
    assert callback.purpose == "status_resolved"
    assert "物资或药品已送达" in render(callback.template, callback.facts).text


def test_source_without_a_callback_hears_nothing() -> None:
    assert plan(assigned(HelperKind.volunteer), ctx(hotlines=frozenset()), HELPER)[1:] == []


def test_every_status_renders_in_both_locales() -> None:
    en = labels("en")
    event = assigned(HelperKind.volunteer)
    for locale, words in (("zh-CN", ZH), ("en", en)):
        context = Context(words, DEFAULTS, INFO, frozenset({"12345-wuhan"}))
        for message in plan(event, context, HELPER) + plan(
            accepted(), context, HELPER, person(DisabilityCategory.visual), "within_24h"
        ):
            assert render(message.template, message.facts, locale).text.strip()
    assert (
        "Jianghan District"
        in render(
            "assignment_helper", plan(event, Context(en, DEFAULTS, INFO), HELPER)[0].facts, "en"
        ).text
    )


# ------------------------------------------------------------------ keys and masking


def test_idempotency_keys_hold_ids_not_personal_data() -> None:
    message = plan(assigned(HelperKind.volunteer).model_copy(update={"offer_id": ""}), OLD, HELPER)
    key = message[0].key(message[0].routes[0])
    assert key == "assignment:volunteer:h1:wechat_work:1"


def test_a_new_offer_is_a_new_message_but_the_same_offer_is_not() -> None:
    first = plan(assigned(HelperKind.volunteer), OLD, HELPER)[0]
    again = plan(assigned(HelperKind.volunteer), OLD, HELPER)[0]
    other = plan(assigned(HelperKind.volunteer).model_copy(update={"offer_id": "o2"}), OLD, HELPER)
    assert first.ref == again.ref != other[0].ref


def test_recorded_recipients_are_masked() -> None:
    assert mask_address("email", "zhang.san@example.org") == "z***@example.org"
    assert mask_address("sms", "13812345678") == "*******5678"
    assert mask_address("voice", "+8613812345678") == "*********5678"
    assert (
        mask_address("wechat_work", "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=S3")
        == "https://qyapi.weixin.qq.com/***"
    )
    assert scrub_digits("call 13812345678 now") == "call *******5678 now"
    assert scrub_digits("电话13812345678，") == "电话*******5678，"
    assert scrub_digits("/v1/cases/2b92d9f5585736fc") == "/v1/cases/2b92d9f5585736fc"


def test_html_part_escapes_facts_and_links_urls() -> None:
    [message, _] = plan(assigned(HelperKind.volunteer), ctx(), HELPER)
    facts = {**message.facts, "helper_name": "<b>李</b>"}
    page = render(message.template, facts).html
    assert "&lt;b&gt;李&lt;/b&gt;" in page and "<b>李</b>" not in page
    assert '<a href="http://127.0.0.1:8001/v1/offers/tok">' in page
