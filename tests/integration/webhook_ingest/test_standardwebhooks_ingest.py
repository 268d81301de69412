"""A Standard Webhooks source posting to the running webhook-ingest, into the real broker.

The signatures are made by the `standardwebhooks` library, as any source speaking the scheme
would make them; the family is found through its entry point, like every gateway.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from standardwebhooks import Webhook

from tests.support.kafka import TopicReader
from tests.support.processes import ServiceProcess, service

TOPIC = "payments.gateway-events"
OLD = "whsec_" + base64.b64encode(b"standard-old-key-0123456789abcd").decode()
NEW = "whsec_" + base64.b64encode(b"standard-new-key-fedcba98765432").decode()


def signed(body: bytes, secret: str, msg_id: str) -> dict[str, str]:
    now = datetime.now(UTC)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id=msg_id, timestamp=now, data=body.decode()),
        "content-type": "application/json",
    }


@pytest.fixture(scope="module")
def ingest(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    gateways = {"standardwebhooks": {"internal": {"webhook_secrets": [OLD, NEW]}}}
    env = {
        "PAYRAIL_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "PAYRAIL_GATEWAYS": json.dumps(gateways),
    }
    with service("webhook_ingest", env, tmp_path_factory.mktemp("ingest-sw")) as svc:
        yield svc


async def test_standard_webhooks_are_verified_and_published_keyed_by_payment_id(
    ingest: ServiceProcess, kafka_bootstrap: str
) -> None:
    reader = TopicReader(kafka_bootstrap, TOPIC)
    await reader.mark()
    url = f"{ingest.url}/webhooks/standardwebhooks/internal"
    refund = {
        "type": "refund.succeeded",
        "data": {"payment_id": "pay_sw_1", "gateway_refund_id": "rf_1", "amount": 700,
                 "currency": "JPY"},
    }  # fmt: skip
    body = json.dumps(refund).encode()

    forged = httpx.post(url, content=body, headers=signed(body, "whsec_" + "A" * 32, "msg_f"))
    assert forged.status_code == 400
    assert forged.json()["reason"] == "invalid_signature"
    # during a rotation the old and the new secret both verify
    for secret, msg_id in ((OLD, "msg_sw_old"), (NEW, "msg_sw_new")):
        response = httpx.post(url, content=body, headers=signed(body, secret, msg_id))
        assert response.status_code == 200, response.text
    no_account = httpx.post(
        f"{ingest.url}/webhooks/standardwebhooks", content=body, headers=signed(body, NEW, "m")
    )
    assert no_account.status_code == 404

    records = await reader.read(expect=2)
    assert sorted(r.headers["ce_id"] for r in records) == [
        "standardwebhooks:msg_sw_new",
        "standardwebhooks:msg_sw_old",
    ]
    for record in records:
        assert record.key == "pay_sw_1"
        assert record.headers["ce_type"] == "gateway.refund.succeeded"
        assert record.headers["ce_source"] == "/payrail/webhook-ingest/standardwebhooks"
        payload = json.loads(record.value)
        assert (payload["amount"], payload["currency"]) == (700, "JPY")
        assert (payload["account"], payload["gateway_refund_id"]) == ("internal", "rf_1")
