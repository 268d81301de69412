"""Bank statement import: ISO 20022 camt.053, SWIFT MT940 and CSV with a column mapping.

:func:`parse_statement` picks the parser from the content (XML with a ``camt.053`` namespace,
MT940 tags) unless a format is given; CSV always needs a :class:`CsvMapping`.
"""

from __future__ import annotations

from reconciler.statements.camt053 import parse_camt053
from reconciler.statements.csvfile import CsvMapping, parse_csv
from reconciler.statements.model import BankStatement, StatementError, content_hash
from reconciler.statements.mt940file import parse_mt940

FORMATS = ("camt.053", "mt940", "csv")


def detect_format(data: bytes) -> str:
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"<") and b"camt.053" in head:
        return "camt.053"
    if head.startswith((b":20:", b"{1:", b":940:")) or b"\n:61:" in data[:65536]:
        return "mt940"
    return "csv"


def parse_statement(
    data: bytes, source: str, *, format: str | None = None, mapping: CsvMapping | None = None
) -> list[BankStatement]:
    """Every statement in ``data`` (the bytes of the file named ``source``).

    Raises :class:`StatementError` for anything it cannot import, naming ``source``.
    """
    kind = format or detect_format(data)
    if kind == "camt.053":
        return parse_camt053(data, source)
    if kind == "mt940":
        return parse_mt940(data, source)
    if kind == "csv":
        if mapping is None:
            raise StatementError(source, "", "a CSV statement needs a column mapping")
        return parse_csv(data, source, mapping)
    raise StatementError(
        source, "", f"unknown statement format {kind!r}; known: {', '.join(FORMATS)}"
    )


__all__ = [
    "FORMATS",
    "BankStatement",
    "CsvMapping",
    "StatementError",
    "content_hash",
    "detect_format",
    "parse_statement",
]
