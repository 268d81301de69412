"""The whole platform as real processes, wired the way ``make run`` wires it.

Kafka, PostgreSQL and localstripe come from the session fixtures of ``tests/conftest.py``; the
four services run as ``python -m <service>`` children on free ports; localstripe POSTs its
Stripe-signed webhooks to webhook-ingest (``register_webhook``, as the launcher does) and also to
a :class:`WebhookRecorder`, so a test holds the exact bytes and headers ingest received and can
deliver them again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import stripe
from pydantic import SecretStr

from payrail.devstack.localstripe import register_webhook
from payrail.devstack.paths import free_port
from tests.support.processes import ServiceProcess

#: the webhook name the launcher registers (re-registering it re-points it)
WEBHOOK = "payrail"
RECORDER = "e2e-recorder"
API_KEY = "sk_test_payrail"
CARD: Any = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"}
SERVICES = {
    "checkout": "checkout",
    "webhook-ingest": "webhook_ingest",
    "entitlements": "entitlements",
    "reconciler": "reconciler",
}


@dataclass(frozen=True)
class Delivery:
    """One webhook exactly as localstripe sent it."""

    body: bytes
    headers: dict[str, str]
    #: ``time.monotonic()`` when it arrived (0 for one a test crafted)
    received_at: float = 0.0

    @property
    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


class WebhookRecorder:
    """An HTTP endpoint that keeps every webhook POSTed to it and answers 200."""

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self._lock = threading.Lock()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                with recorder._lock:
                    recorder.deliveries.append(Delivery(body, headers, time.monotonic()))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                """Quiet: the test output is for the test."""

        self._server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/"

    def find(self, match: Callable[[dict[str, Any]], bool], timeout: float = 30.0) -> Delivery:
        """The first delivery whose event matches, waiting for it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                found = [d for d in self.deliveries if match(d.event)]
            if found:
                return found[0]
            time.sleep(0.1)
        raise TimeoutError("no matching webhook was delivered")

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class Stack:
    kafka_bootstrap: str
    database_url: str
    localstripe_url: str
    logs: Path
    recorder: WebhookRecorder
    webhook_secret: str = field(default_factory=lambda: f"whsec_{uuid.uuid4().hex}")
    ports: dict[str, int] = field(default_factory=lambda: {name: free_port() for name in SERVICES})
    services: dict[str, ServiceProcess] = field(default_factory=dict)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    @property
    def stripe(self) -> stripe.StripeClient:
        return stripe.StripeClient(API_KEY, base_addresses={"api": self.localstripe_url})

    def env(self) -> dict[str, str]:
        """What the launcher gives every service, plus the demo's and CORS's addresses."""
        gateways = {
            "stripe": {
                "default": {
                    "api_key": API_KEY,
                    "api_base": self.localstripe_url,
                    "webhook_secrets": [self.webhook_secret],
                }
            }
        }
        return {
            "PAYRAIL_DATABASE_URL": self.database_url,
            "PAYRAIL_KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap,
            "PAYRAIL_GATEWAYS": json.dumps(gateways),
            "PAYRAIL_LOG_JSON": "false",
            "PAYRAIL_DEMO_ENTITLEMENTS_URL": self.url("entitlements"),
            "PAYRAIL_CORS_ALLOW_ORIGINS": json.dumps([self.url("checkout")]),
            # the janitor syncs within seconds, not its production minutes
            "PAYRAIL_JANITOR_SCHEDULE": "3,6,12,60,120",
            "PAYRAIL_JANITOR_POLL_INTERVAL_SECONDS": "0.5",
            "PYTHONUNBUFFERED": "1",
        }

    def start(self, name: str, extra: Mapping[str, str] | None = None) -> ServiceProcess:
        """Start (or restart) one service on its fixed port and wait for /readyz."""
        port = self.ports[name]
        log_path = self.logs / f"{name}-{time.monotonic_ns()}.log"
        env = {**os.environ, **self.env(), **(extra or {}), "PAYRAIL_HTTP_PORT": str(port)}
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", SERVICES[name]],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        svc = ServiceProcess(SERVICES[name], port, process, log_path)
        self.services[name] = svc
        svc.wait_ready(timeout=120)
        return svc

    def start_all(self) -> None:
        for name in SERVICES:
            self.start(name)
        self.point_webhook_at(f"{self.url('webhook-ingest')}/webhooks/stripe")
        register_webhook(
            self.localstripe_url, RECORDER, self.recorder.url, SecretStr(self.webhook_secret)
        )

    def point_webhook_at(self, url: str) -> None:
        register_webhook(self.localstripe_url, WEBHOOK, url, SecretStr(self.webhook_secret))

    def stop_all(self) -> None:
        for svc in reversed(list(self.services.values())):
            svc.stop()

    # ---- what a client does ----

    def create_payment(self, **overrides: Any) -> dict[str, Any]:
        body = {
            "amount": 1999,
            "currency": "USD",
            "user_id": f"u_{uuid.uuid4().hex[:10]}",
            "sku": "pro-monthly",
            "gateway": "stripe",
            **overrides,
        }
        response = httpx.post(
            f"{self.url('checkout')}/v1/payments",
            json=body,
            headers={"Idempotency-Key": uuid.uuid4().hex},
            timeout=30,
        )
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    def pay(self, payment: dict[str, Any]) -> None:
        """Pay the payment's PaymentIntent with the test card at localstripe."""
        client = self.stripe
        method = client.v1.payment_methods.create(params={"type": "card", "card": CARD})
        intent_id = payment["gateway_payment_id"]
        client.v1.payment_intents.update(intent_id, params={"payment_method": method.id})
        assert client.v1.payment_intents.confirm(intent_id).status == "succeeded"

    def payment(self, payment_id: str) -> dict[str, Any]:
        response = httpx.get(f"{self.url('checkout')}/v1/payments/{payment_id}", timeout=10)
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()
        return found

    def access(self, payment_id: str, *, wait: float = 0, since: str = "pending") -> str:
        response = httpx.get(
            f"{self.url('entitlements')}/v1/payments/{payment_id}/access",
            params={"wait": wait, "since": since},
            timeout=wait + 10,
        )
        assert response.status_code == 200, response.text
        return str(response.json()["state"])

    def access_becomes(self, payment_id: str, state: str, timeout: float = 60.0) -> None:
        """Long-poll entitlements (as a front end does) until the access is ``state``."""
        deadline = time.monotonic() + timeout
        seen = "pending"
        while time.monotonic() < deadline:
            seen = self.access(payment_id, wait=10, since=seen)
            if seen == state:
                return
        raise AssertionError(f"{payment_id}: access {seen}, never {state}")

    def deliver(self, delivery: Delivery) -> httpx.Response:
        """POST a webhook to ingest exactly as localstripe sent it."""
        return httpx.post(
            f"{self.url('webhook-ingest')}/webhooks/stripe",
            content=delivery.body,
            headers={k: v for k, v in delivery.headers.items() if k.lower() != "content-length"},
            timeout=10,
        )

    def signed(self, event: dict[str, Any]) -> Delivery:
        """A Stripe event signed with the stack's webhook secret (Stripe's scheme)."""
        body = json.dumps(event).encode()
        header = stripe.WebhookSignature.generate_signature_header(
            body.decode(), self.webhook_secret, timestamp=int(time.time())
        )
        return Delivery(body, {"Stripe-Signature": header, "Content-Type": "application/json"})
