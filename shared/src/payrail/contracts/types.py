"""Field types shared by the event contracts.

Amounts are strict integers (JSON ``19.99`` or ``1999.0`` is rejected, never coerced) and
currencies are validated ISO 4217 codes, because a contract is the last line of defence against
a producer that sends money as a float.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, ConfigDict, Field, StringConstraints

from payrail.money import normalize_currency

#: an amount in integer minor units of its currency (may be negative for deltas)
MinorUnits = Annotated[int, Field(strict=True)]
#: a non-negative amount in integer minor units
NonNegativeMinorUnits = Annotated[int, Field(strict=True, ge=0)]
#: a validated, upper-cased ISO 4217 code
Currency = Annotated[str, AfterValidator(normalize_currency)]
#: an identifier that must be present
Id = Annotated[str, StringConstraints(min_length=1, max_length=255)]

#: Contracts are tolerant readers: a field added by a newer producer is ignored rather than
#: turning every message into poison for consumers that have not been upgraded yet.
CONTRACT_CONFIG = ConfigDict(extra="ignore", frozen=True)
