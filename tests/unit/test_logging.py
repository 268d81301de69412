import json
import logging

import pytest
import structlog

from payrail.logging import configure_logging, get_logger, redact_text


def test_redacts_credentials_in_urls_and_key_shaped_tokens() -> None:
    text = "db postgresql+psycopg://payrail:hunter2@db:5432/x key sk_test_abcdef123456 ok"
    out = redact_text(text)
    assert "hunter2" not in out
    assert "sk_test_abcdef123456" not in out
    assert "payrail:[redacted]@db" in out


def test_log_lines_are_json_and_never_carry_secrets(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("unit", level="INFO", json=True)
    try:
        get_logger("t").info(
            "calling gateway",
            api_key="sk_live_supersecretvalue",
            headers={"Authorization": "Bearer abc.def", "X-Trace": "1"},
            url="https://user:pw123@host/path",
            note="secret whsec_zzzzzzzzzzzz rotated",
        )
        logging.getLogger("uvicorn.error").warning("stdlib line with sk_test_1234567890")
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    finally:
        structlog.reset_defaults()
    assert lines[0]["event"] == "calling gateway"
    assert lines[0]["service"] == "unit"
    dumped = json.dumps(lines)
    secrets = [
        "sk_live_supersecretvalue",
        "abc.def",
        "pw123",
        "whsec_zzzzzzzzzzzz",
        "sk_test_1234567890",
    ]
    assert [s for s in secrets if s in dumped] == []
    assert lines[0]["headers"]["X-Trace"] == "1"
