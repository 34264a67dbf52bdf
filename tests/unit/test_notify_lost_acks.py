"""A database answer lost in transit (the write landed, the reply did not) must neither silence
the helper's message nor send it twice when the handler is retried."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry
from pymongo.errors import AutoReconnect

from services.notify.channels import ChannelInfo, OutboundMessage, SendResult
from services.notify.directory import HelperDirectory
from services.notify.domain import Context, Defaults
from services.notify.metrics import NotifyMetrics
from services.notify.repository import CasePerson
from services.notify.retry import RetryPolicy
from services.notify.templates import labels
from services.notify.usecases import Notify
from shared.contracts import (
    AssignedHelper,
    CaseAssigned,
    Contact,
    Event,
    HelperKind,
    Need,
    OutreachDeadLetter,
    OutreachRetry,
    Urgency,
)
from shared.storage import Document

NOW = datetime(2022, 11, 22, 8, 30, tzinfo=UTC)


class FlakyStore:
    """An in-memory outreach store whose next write lands but whose answer is lost."""

    def __init__(self) -> None:
        self.attempts: dict[str, Document] = {}
        self.lose_begin_answer = False
        self.lose_finish_answer = False
        self.seen_again = asyncio.Event()

    async def contacts(self, helper_ids: list[str] | None = None) -> dict[str, Contact]:
        return {"v1": Contact(phone="13900000001")}

    async def case_person(self, case_id: str) -> CasePerson | None:
        return None

    async def begin(self, case_id: str, attempt: Document) -> Document | None:
        if attempt["key"] in self.attempts:
            self.seen_again.set()
            return self.attempts[attempt["key"]]
        self.attempts[attempt["key"]] = dict(attempt)
        if self.lose_begin_answer:
            self.lose_begin_answer = False
            raise AutoReconnect("connection closed before the reply")
        return None

    async def finish(self, case_id: str, key: str, outcome: Document) -> None:
        self.attempts[key].update(outcome)
        if self.lose_finish_answer:
            self.lose_finish_answer = False
            raise AutoReconnect("connection closed before the reply")

    async def unfinished(self, before: datetime, limit: int = 200) -> list[Document]:
        return []

    async def mark_interrupted(self, case_id: str, key: str, at: datetime) -> bool:
        return False

    async def dead_letter(self, record: OutreachDeadLetter) -> None:
        raise AssertionError("nothing here should give up")

    async def receipt(self, provider_id: str, receipt: Document) -> bool:
        return False


class GroupChat:
    name = "wechat_work"
    info = ChannelInfo("wechat_work", "group", private=False)

    def __init__(self) -> None:
        self.sent: list[OutboundMessage] = []
        self.on_the_wire = asyncio.Event()
        self.open = asyncio.Event()
        self.open.set()

    async def send(self, message: OutboundMessage) -> SendResult:
        self.sent.append(message)
        self.on_the_wire.set()
        await self.open.wait()
        return SendResult(ok=True, provider_id=f"p{len(self.sent)}")

    async def aclose(self) -> None:
        return None


async def published(_: Event) -> None:
    return None


async def scheduled(_: OutreachRetry, __: int, ___: int) -> None:
    raise AssertionError("nothing here should be retried later")


def notify(store: FlakyStore, chat: GroupChat) -> Notify:
    return Notify(
        store,
        HelperDirectory(store.contacts),
        {chat.name: chat},
        Context(
            labels("zh-CN"), Defaults(team_webhook="http://wechat/hook"), {chat.name: chat.info}
        ),
        published,
        scheduled,
        NotifyMetrics.create(CollectorRegistry()),
        RetryPolicy(1, ()),
        clock=lambda: NOW,
    )


OFFER = CaseAssigned(
    case_id="c1",
    helper=AssignedHelper(
        helper_id="v1", kind=HelperKind.volunteer, name="李志愿", distance_km=0.7
    ),
    need=Need.medicine,
    urgency=Urgency.immediate,
    division_code="420103",
    received_at=NOW,
    offer_id="o1",
)


async def test_a_lost_answer_to_the_record_before_sending_still_sends_once() -> None:
    store, chat = FlakyStore(), GroupChat()
    service = notify(store, chat)
    store.lose_begin_answer = True
    with pytest.raises(AutoReconnect):
        await service.handle(OFFER)
    assert chat.sent == [], "the record landed, the send had not happened"
    await service.handle(OFFER)  # the transient-error retry runs the handler again
    assert len(chat.sent) == 1
    assert [a["status"] for a in store.attempts.values()] == ["sent"]


async def test_a_lost_answer_to_the_record_after_sending_never_sends_again() -> None:
    store, chat = FlakyStore(), GroupChat()
    service = notify(store, chat)
    store.lose_finish_answer = True
    with pytest.raises(AutoReconnect):
        await service.handle(OFFER)
    await service.handle(OFFER)
    assert len(chat.sent) == 1
    assert [a["status"] for a in store.attempts.values()] == ["sent"]


async def test_another_process_left_it_sending_so_it_may_have_gone_and_is_not_repeated() -> None:
    store, chat = FlakyStore(), GroupChat()
    store.lose_begin_answer = True
    with pytest.raises(AutoReconnect):
        await notify(store, chat).handle(OFFER)  # that process then died
    await notify(store, chat).handle(OFFER)  # a new process gets the redelivery
    assert chat.sent == []
    assert [a["status"] for a in store.attempts.values()] == ["sending"]


async def test_a_redelivery_racing_the_first_delivery_in_one_process_sends_once() -> None:
    store, chat = FlakyStore(), GroupChat()
    service = notify(store, chat)
    chat.open.clear()  # the first send is on the wire when the broker redelivers the event
    first = asyncio.create_task(service.handle(OFFER))
    await chat.on_the_wire.wait()
    second = asyncio.create_task(service.handle(OFFER))
    await store.seen_again.wait()
    await asyncio.sleep(0)  # one turn of the loop: the redelivery now waits on the first send
    chat.open.set()
    await asyncio.gather(first, second)
    assert len(chat.sent) == 1
    assert [a["status"] for a in store.attempts.values()] == ["sent"]
