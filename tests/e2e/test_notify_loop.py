"""The loop closed end to end, as `make run` starts it: a hotline reports a deaf person's need,
the nearest volunteer is offered it in WeChat Work, accepts through the link, the person gets a
text message (never a call) and the hotline hears each step, signed."""

from __future__ import annotations

import copy
import json
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from shared.contracts import HardshipReport
from shared.devstack import DevStack
from tests.support import Recorded, RecordingServer, bearer, free_ports, started_stack, wait_for

EXAMPLE: dict[str, Any] = HardshipReport.model_json_schema()["examples"][0]
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
REGISTRY = {
    "helpers": [
        {
            "id": "vol-near",
            "kind": "volunteer",
            "name": "李红",
            "lat": EXAMPLE["location"]["lat"] + 0.004,
            "lon": EXAMPLE["location"]["lon"],
            "radius_km": 5,
            "capacity": 2,
            "contact": {"phone": "13900001111"},
        },
        {
            "id": "duty-desk-wuhan",
            "kind": "duty_desk",
            "name": "武汉市残联值班室",
            "divisions": ["420100"],
            "capacity": 100000,
        },
    ]
}


def gateway(request: Recorded) -> tuple[int, dict[str, Any]]:
    return 200, {"message_id": uuid.uuid4().hex}


@pytest.fixture(scope="module")
async def servers() -> AsyncIterator[dict[str, RecordingServer]]:
    async with (
        RecordingServer() as wechat,
        RecordingServer(gateway) as sms,
        RecordingServer(lambda _: (204, {})) as hotline,
        RecordingServer(lambda _: (202, {})) as calls,
    ):
        yield {"wechat": wechat, "sms": sms, "hotline": hotline, "calls": calls}


@pytest.fixture(scope="module")
def stack(
    amqp_url: str,
    mongo_url: str,
    servers: dict[str, RecordingServer],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[DevStack]:
    ports = free_ports("intake", "matching", "notify")
    callbacks = {EXAMPLE["source"]: {"url": f"{servers['hotline'].url}/cb", "secret": SECRET}}
    with started_stack(
        tmp_path_factory.mktemp("var"),
        REGISTRY,
        ports,
        {
            "AMQP_URL": amqp_url,
            "MONGO_URL": mongo_url,
            "MONGO_DB": f"e2e_{uuid.uuid4().hex[:8]}",
            "MATCHING_PUBLIC_URL": f"http://127.0.0.1:{ports['matching']}",
            "WECHAT_WORK_WEBHOOK_URL": f"{servers['wechat'].url}/cgi-bin/webhook/send?key=team",
            "SMS_PROVIDER": "generic",
            "SMS_GATEWAY_URL": f"{servers['sms'].url}/v1/sms",
            "CALL_CENTRE_URL": f"{servers['calls'].url}/v1/call-tasks",
            "HOTLINE_CALLBACKS": json.dumps(callbacks),
        },
    ) as stack:
        yield stack


async def test_deaf_persons_report_ends_in_a_text_to_them_and_signed_callbacks_to_the_hotline(
    stack: DevStack, servers: dict[str, RecordingServer]
) -> None:
    body = copy.deepcopy(EXAMPLE)
    body["external_id"] = f"WH-{uuid.uuid4().hex[:8]}"
    body["person"]["disability"] = {"category": "hearing", "grade": 2}
    async with httpx.AsyncClient(timeout=10) as client:
        posted = await client.post(
            f"{stack.url('intake')}/v1/reports", json=body, headers=bearer(stack.api_key)
        )
        assert posted.status_code == 202

        async def offered() -> str | None:
            for request in servers["wechat"].requests:
                found = re.search(r"https?://\S+/v1/offers/\S+", request.json()["text"]["content"])
                if found:
                    return found.group()
            return None

        link = await wait_for(offered, timeout=20)
        answer = await client.post(f"{link}/accept")
        assert answer.status_code == 200 and answer.json()["result"] == "accepted"

        async def texted() -> list[dict[str, Any]]:
            sent = [r.json() for r in servers["sms"].requests]
            return [s for s in sent if s["to"] == "+8613800138000"]

        [text] = await wait_for(texted, timeout=20)

        async def statuses() -> list[str] | None:
            seen = [
                Webhook(SECRET).verify(r.body, r.headers)["data"]["status"]
                for r in servers["hotline"].requests
            ]
            return seen if len(seen) >= 3 else None

        seen = await wait_for(statuses, timeout=20)
    assert sorted(seen) == ["accepted", "assigned", "received"]
    assert text["template_id"] == "2000005" and "李红" in text["params"]["helper"]
    assert servers["calls"].requests == []
    helper_texts = [r.json() for r in servers["sms"].requests if r.json()["to"] != text["to"]]
    assert helper_texts and body["location"]["address"] in helper_texts[0]["text"]
