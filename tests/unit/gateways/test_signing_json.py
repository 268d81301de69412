"""A verified body is read as JSON exactly as the standard library reads it."""

from __future__ import annotations

import json

import pytest

from payrail.gateways.base import MalformedPayload
from payrail.gateways.signing import parse_json_object

ACCEPTED = [
    b'{"id": "evt_1", "amount": 1999, "nested": {"list": [1, 2.5, null, true]}}',
    b'{"a": 1, "a": 2}',  # duplicate keys: the last wins
    b'{"big": 123456789012345678901234567890, "tiny": 1e-320}',
    b'\xef\xbb\xbf{"bom": "utf-8"}',  # a UTF-8 byte-order mark
    '{"utf16": "é"}'.encode("utf-16"),
    b'{"lone": "\\ud800"}',  # a lone surrogate escape
]


@pytest.mark.parametrize("body", ACCEPTED)
def test_every_body_the_standard_library_reads_reads_the_same(body: bytes) -> None:
    assert parse_json_object(body) == json.loads(body)


@pytest.mark.parametrize(
    "body", [b"", b"not json", b'{"a": 1} trailing', b'{"a": 01}', b'{"a": "\xff"}', b"[1, 2]"]
)
def test_anything_else_is_malformed(body: bytes) -> None:
    with pytest.raises(MalformedPayload):
        parse_json_object(body)
