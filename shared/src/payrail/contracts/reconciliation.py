"""Discrepancies the reconciler publishes on ``reconciliation.discrepancies``."""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from pydantic import BaseModel, Field

from payrail.contracts.types import CONTRACT_CONFIG, Currency, Id, MinorUnits

RECONCILIATION_DISCREPANCY: Final = "reconciliation.discrepancy"


class DiscrepancyCode(StrEnum):
    """Why payrail's records, a gateway's reports and the bank disagree (DESIGN, Reconciliation)."""

    MISSING_IN_LEDGER = "MISSING_IN_LEDGER"
    MISSING_AT_GATEWAY = "MISSING_AT_GATEWAY"
    MISSING_IN_BANK = "MISSING_IN_BANK"
    AMOUNT_MISMATCH = "AMOUNT_MISMATCH"
    STATUS_MISMATCH = "STATUS_MISMATCH"
    FEE_MISMATCH = "FEE_MISMATCH"
    TIMING_UNSETTLED = "TIMING_UNSETTLED"
    FX_DIFFERENCE = "FX_DIFFERENCE"
    DUPLICATE = "DUPLICATE"
    REFUND_NOT_RECORDED = "REFUND_NOT_RECORDED"
    CHARGEBACK_NOT_RECORDED = "CHARGEBACK_NOT_RECORDED"
    PAYOUT_FAILED = "PAYOUT_FAILED"
    BANK_CHARGE = "BANK_CHARGE"
    UNEXPLAINED = "UNEXPLAINED"


class ReconciliationDiscrepancy(BaseModel):
    """One discrepancy of a reconciliation run; ``amount`` is the signed delta it explains."""

    model_config = CONTRACT_CONFIG

    run_id: Id
    code: DiscrepancyCode
    amount: MinorUnits
    currency: Currency
    #: identifiers of the records involved (payment id, gateway transaction, bank entry, ...)
    refs: dict[str, str] = Field(default_factory=dict)
    detail: str
