"""Bank statements in, bank lines out: camt.053 (.02 and .08), MT940 and mapped CSV files."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from reconciler.statements import (
    BankStatement,
    CsvMapping,
    StatementError,
    detect_format,
    parse_statement,
)

FIXTURES = Path(__file__).parent / "fixtures"


def load(name: str, mapping: CsvMapping | None = None) -> list[BankStatement]:
    return parse_statement((FIXTURES / name).read_bytes(), name, mapping=mapping)


def test_camt053_v02_reads_booked_entries_with_signs_references_and_balances() -> None:
    [statement] = load("camt053_v02.xml")
    assert statement.format == "camt.053"
    assert (statement.statement_id, statement.account, statement.currency) == (
        "0352C5320250304",
        "DE89370400440532013000",
        "EUR",
    )
    assert (statement.opening_balance, statement.closing_balance) == (1_000_000, 1_418_530)
    assert (statement.period_start, statement.period_end) == (date(2025, 3, 3), date(2025, 3, 4))
    lines = statement.lines.to_dicts()
    assert [line["amount"] for line in lines] == [320_055, 100_000, -1_525]  # PDNG entry skipped
    payout, batch, charge = lines
    assert payout["line_id"] == "2025030300012345"
    assert payout["end_to_end_id"] == "po_1QxYz2LkdIwHu7ix8R3mN0pQ"
    assert "po_1QxYz2LkdIwHu7ix8R3mN0pQ" in payout["references"]
    assert payout["counterparty"] == "STRIPE PAYMENTS EUROPE LTD"
    assert payout["bank_code"] == "ESCT"
    # a batch booking keeps the references of every transaction in it
    assert {"ADYEN-BATCH-118", "ADYEN-BATCH-119", "RF18539007547034"} <= set(batch["references"])
    assert "NOTPROVIDED" not in batch["references"]
    assert batch["description"] == "ADYEN N.V. SETTLEMENT"
    assert charge["bank_code"] == "CHRG"
    assert charge["line_id"] == "0352C5320250304/4"


def test_camt053_v08_reads_moved_elements_and_tolerates_missing_optional_ones() -> None:
    [statement] = load("camt053_v08.xml")
    assert statement.account == "000123456789"
    assert statement.opening_balance is None
    assert statement.currency is None
    credit, debit = statement.lines.to_dicts()
    assert credit["booking_date"] == date(2025, 3, 31)  # from BookgDt/DtTm
    assert credit["currency"] == "GBP"
    assert credit["counterparty"] == "PAYPAL EUROPE S.A R.L."  # Dbtr/Pty/Nm in .08
    assert credit["references"] == ["7a562c67-ca16-48ba-b074-65581be6f001"]
    assert debit["amount"] == -12_000
    assert debit["booking_date"] == date(2025, 3, 31)  # no BookgDt: the value date


def test_mt940_reads_every_statement_block_with_reversals_as_debits() -> None:
    first, second = load("statement.mt940")
    assert (first.statement_id, second.statement_id) == ("STARTUMSE/00071", "STARTUMSE/00072")
    assert first.account == "NL91ABNA0417164300"
    assert (first.opening_balance, first.closing_balance) == (1_250_000, 4_042_655)
    lines = first.lines.to_dicts()
    assert [line["amount"] for line in lines] == [1_825_040, 981_115, -3_500, -10_000]
    assert lines[0]["references"] == ["PO1QXYZ2LKD", "0303FT7722"]
    assert "po_1QxYz2LkdIwHu7ix8R3mN0pQ" in lines[0]["description"]
    assert lines[1]["references"] == []  # NONREF is no reference
    assert lines[2]["bank_code"] == "NCHG"
    assert second.lines["amount"].to_list() == [50_000]


def test_csv_with_a_signed_amount_column() -> None:
    mapping = CsvMapping(
        booking_date="Date",
        value_date="Value Date",
        amount="Amount",
        currency="Currency",
        references=("Reference", "Bank Reference"),
        description="Details",
        counterparty="Counterparty",
        bank_code="Type",
        statement_id="ACME-2025-03",
    )
    [statement] = load("bank_signed.csv", mapping=mapping)
    lines = statement.lines.to_dicts()
    assert [line["amount"] for line in lines] == [320_055, -1_525, 100_000]
    assert lines[0]["references"] == ["po_1QxYz2LkdIwHu7ix8R3mN0pQ", "BR-1001"]
    assert lines[1]["references"] == ["BR-1002"]
    assert lines[2]["value_date"] == date(2025, 3, 4)  # empty value date: the booking date
    assert lines[2]["description"] == "ADYEN N.V., SETTLEMENT"
    assert lines[0]["line_id"] == "ACME-2025-03/2"  # the file's line number


def test_csv_with_debit_and_credit_columns_decimal_commas_and_day_first_dates() -> None:
    mapping = CsvMapping(
        booking_date="Buchungstag",
        value_date="Valuta",
        debit="Soll",
        credit="Haben",
        description="Verwendungszweck",
        references=("Kundenreferenz",),
        default_currency="EUR",
        delimiter=";",
        date_format="%d.%m.%Y",
        decimal_separator=",",
        thousands_separator=".",
    )
    [statement] = load("bank_debit_credit.csv", mapping=mapping)
    assert statement.lines["amount"].to_list() == [123_456, -1_250]
    assert statement.lines["booking_date"].to_list() == [date(2025, 3, 3), date(2025, 3, 4)]
    assert statement.statement_id == "bank_debit_credit.csv"


def test_formats_are_detected_from_content() -> None:
    assert detect_format((FIXTURES / "camt053_v08.xml").read_bytes()) == "camt.053"
    assert detect_format((FIXTURES / "statement.mt940").read_bytes()) == "mt940"
    assert detect_format((FIXTURES / "bank_signed.csv").read_bytes()) == "csv"


def test_the_same_file_hashes_the_same_and_a_changed_one_does_not() -> None:
    data = (FIXTURES / "statement.mt940").read_bytes()
    [a, _], [b, _] = parse_statement(data, "x"), parse_statement(data, "y")
    [c, _] = parse_statement(data.replace(b"INCOMING", b"OUTGOING"), "x")
    assert a.content_hash == b.content_hash != c.content_hash


def v02(old: str, new: str) -> bytes:
    return (FIXTURES / "camt053_v02.xml").read_bytes().replace(old.encode(), new.encode(), 1)


@pytest.mark.parametrize(
    ("data", "where", "message"),
    [
        (
            v02('<Amt Ccy="EUR">3200.55', '<Amt Ccy="EUR">32OO.55'),
            "Stmt[1]/Ntry[1]/Amt",
            "bad amount",
        ),
        (
            v02('<Amt Ccy="EUR">3200.55', '<Amt Ccy="EUR">3200.555'),
            "Stmt[1]/Ntry[1]/Amt",
            "decimal places",
        ),
        (
            v02("<CdtDbtInd>DBIT", "<CdtDbtInd>DEBIT"),
            "Stmt[1]/Ntry[4]/CdtDbtInd",
            "expected CRDT or DBIT",
        ),
        (v02("14185.30", "14185.31"), "Stmt[1]", "statement is incomplete"),
        (v02("</Stmt>", "</Stmnt>"), "line 95", "malformed XML"),
        (v02("camt.053.001.02", "pain.001.001.03"), "Document", "not a camt.053 document"),
    ],
)
def test_a_bad_camt053_names_the_file_and_the_element(
    data: bytes, where: str, message: str
) -> None:
    with pytest.raises(StatementError) as caught:
        parse_statement(data, "march.xml", format="camt.053")
    assert caught.value.source == "march.xml"
    assert caught.value.where.startswith(where)
    assert message in str(caught.value)


def test_camt053_with_entity_expansion_is_refused() -> None:
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;">]>'
        b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02">&b;</Document>'
    )
    with pytest.raises(StatementError, match="refused"):
        parse_statement(bomb, "bomb.xml", format="camt.053")


def test_a_bad_mt940_line_names_its_line_number() -> None:
    data = (FIXTURES / "statement.mt940").read_bytes().replace(b"9811,15", b"9811,155")
    with pytest.raises(StatementError) as caught:
        parse_statement(data, "march.sta")
    assert caught.value.where == "line 8 (:61:)"
    assert "decimal places" in str(caught.value)


def test_an_mt940_whose_lines_miss_the_closing_balance_is_refused() -> None:
    data = (
        (FIXTURES / "statement.mt940")
        .read_bytes()
        .replace(b":62F:C250306EUR40426,55", b":62F:C250306EUR40426,56")
    )
    with pytest.raises(StatementError, match="incomplete"):
        parse_statement(data, "march.sta")


def test_a_bad_csv_amount_names_the_line() -> None:
    mapping = CsvMapping(booking_date="Date", amount="Amount", currency="Currency")
    data = (FIXTURES / "bank_signed.csv").read_bytes().replace(b"-15.25", b"-15.2x")
    with pytest.raises(StatementError) as caught:
        parse_statement(data, "bank.csv", mapping=mapping)
    assert str(caught.value) == "bank.csv: line 3: Amount '-15.2x' is not a decimal amount"


def test_a_bad_csv_date_names_the_line_and_the_format() -> None:
    mapping = CsvMapping(
        booking_date="Date", amount="Amount", currency="Currency", date_format="%d/%m/%Y"
    )
    with pytest.raises(StatementError, match="line 2: Date '2025-03-03' does not match %d/%m/%Y"):
        load("bank_signed.csv", mapping=mapping)


def test_a_csv_mapping_needs_one_amount_layout_and_a_currency() -> None:
    with pytest.raises(ValueError, match="either `amount`"):
        CsvMapping(booking_date="d", amount="a", debit="x", default_currency="EUR")
    with pytest.raises(ValueError, match="currency"):
        CsvMapping(booking_date="d", amount="a")
    with pytest.raises(StatementError, match="column mapping"):
        load("bank_signed.csv")
