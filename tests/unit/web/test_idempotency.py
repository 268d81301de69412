"""The pure parts of payrail.web.idempotency: what makes two requests the same, the header
every POST needs, and how a stored answer is sent again."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from payrail.web.idempotency import Answer, IdempotencyKey, fingerprint
from payrail.web.problems import install_problem_handlers


class Body(BaseModel):
    amount: int
    currency: str


def test_the_same_request_spelled_another_way_has_one_fingerprint() -> None:
    one = fingerprint("POST", "/v1/x", [("b", "2"), ("a", "1")], Body(amount=1, currency="EUR"))
    other = fingerprint(
        "POST",
        "/v1/x",
        [("a", "1"), ("b", "2")],
        Body.model_validate_json('{"currency": "EUR",   "amount": 1}'),
    )
    assert one == other


def test_any_difference_in_the_request_is_another_fingerprint() -> None:
    base = ("POST", "/v1/statements", [("filename", "a.csv")], b"data")
    prints = {
        fingerprint(*base),
        fingerprint("PUT", *base[1:]),
        fingerprint("POST", "/v1/report-lines", *base[2:]),
        fingerprint("POST", "/v1/statements", [("filename", "b.csv")], b"data"),
        fingerprint("POST", "/v1/statements", [], b"data"),
        fingerprint(*base[:3], b"data "),
        # a query value that runs into the body is not the same request
        fingerprint("POST", "/v1/statements", [("filename", "a.csv\n\ndata")], b""),
    }
    assert len(prints) == 7


def _app() -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)

    @app.post("/things")
    async def post(key: IdempotencyKey) -> dict[str, str]:
        return {"key": key}

    return app


async def test_a_post_without_a_key_is_a_400_problem() -> None:
    transport = httpx.ASGITransport(app=_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        missing = await client.post("/things")
        empty = await client.post("/things", headers={"Idempotency-Key": ""})
        too_long = await client.post("/things", headers={"Idempotency-Key": "k" * 256})
        given = await client.post("/things", headers={"Idempotency-Key": "k-1"})
    for refused in (missing, empty):
        assert refused.status_code == 400
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["type"].endswith("/idempotency-key-required")
    assert too_long.status_code == 422
    assert given.json() == {"key": "k-1"}


def test_an_answer_is_sent_again_byte_for_byte_and_marked_replayed() -> None:
    original = JSONResponse({"id": "r_1"}, status_code=202, headers={"Location": "/v1/r/r_1"})
    answer = Answer.of(original)
    replay = answer.response(replayed=True)
    own = answer.response(replayed=False)
    for sent in (replay, own):
        assert (sent.status_code, sent.body) == (202, original.body)
        assert sent.headers["location"] == "/v1/r/r_1"
        assert sent.headers["content-type"] == "application/json"
        assert sent.headers["content-length"] == str(len(original.body))
    assert replay.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in own.headers


def test_a_text_answer_keeps_its_media_type() -> None:
    answer = Answer.of(Response("a,b\n", media_type="text/csv"))
    assert answer.response(replayed=True).headers["content-type"] == "text/csv; charset=utf-8"
