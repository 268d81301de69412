"""Reading and writing the entitlements schema.

Writes happen in the inbox consumer's transaction, one statement per lifecycle event
(:meth:`AccessStore.decide`): it creates or locks the payment's access row, moves its state,
creates or revokes the grant, stages the announcement in the outbox and sends ``NOTIFY`` on the
access channel, which PostgreSQL delivers only when (and if) the transaction commits: the
long-polling readers wake exactly when the change is visible, and learn the new access from the
notification itself.

One prebuilt statement rather than a read, a decision in Python and writes: at a few hundred
events a second every round trip's driver and network work is CPU the service needs, so the
decision is made in Python for every state the row could be in (:func:`entitlements.domain.moves`)
and the database applies the one that holds.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import RowMapping, TextClause, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from entitlements.domain import AccessState, Moves
from entitlements.tables import EntitlementsTables, entitlements_tables
from payrail.contracts.payments import PaymentLifecycle
from payrail.messaging.outbox import Outbox


@dataclass(frozen=True, slots=True)
class Grant:
    """One entitlement: ``sku`` for ``user_id`` because of ``payment_id``."""

    user_id: str
    sku: str
    payment_id: str
    status: str
    granted_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class Access:
    """A payment's access as the API reports it (the times only once it was granted)."""

    payment_id: str
    state: AccessState
    user_id: str
    sku: str
    reason: str | None
    updated_at: datetime
    granted_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class Decided:
    """What :meth:`AccessStore.decide` did to a payment's access."""

    state: AccessState
    #: the event moved the state (False: it changed nothing)
    moved: bool
    #: a grant was created or revoked, and its announcement staged
    announced: bool


class AccessConflict(ValueError):
    """A lifecycle event names another user or sku than the payment's first event did: not
    applied (it goes to the dead-letter topic for a human to look at)."""


class AccessStore:
    def __init__(self, schema: str) -> None:
        self.t: EntitlementsTables = entitlements_tables(schema)
        outbox = Outbox(schema)
        q = f'"{self.t.schema}"'
        # One statement per event. ``access`` creates the payment's row or locks it (so two
        # deliveries of one payment's events, even on two instances, apply one after the
        # other) and moves its state as ``:moves`` (state -> next state, from domain.moves)
        # says for the state it finds; ``updated_at = :at`` afterwards tells that it moved.
        # Then the grant change (the state a move ended in names it; the unique payment_id
        # makes a second grant nothing), the announcement when a grant changed, and the
        # notification of the access as it now is (the access route's answer, as JSON).
        decide = (
            f"WITH access AS ("
            f"  INSERT INTO {q}.payment_access AS a"
            f"    (payment_id, user_id, sku, state, reason, updated_at)"
            f"  VALUES (:payment_id, :user_id, :sku,"
            f"    coalesce(CAST(:moves AS jsonb) ->> 'pending', 'pending'),"
            f"    CASE WHEN CAST(:moves AS jsonb) ? 'pending' THEN :reason END,"
            f"    CASE WHEN CAST(:moves AS jsonb) ? 'pending' THEN :at"
            f"      ELSE clock_timestamp() END)"
            f"  ON CONFLICT (payment_id) DO UPDATE SET"
            f"    state = coalesce(CAST(:moves AS jsonb) ->> a.state, a.state),"
            f"    reason = CASE WHEN CAST(:moves AS jsonb) ? a.state THEN :reason"
            f"      ELSE a.reason END,"
            f"    updated_at = CASE WHEN CAST(:moves AS jsonb) ? a.state THEN :at"
            f"      ELSE a.updated_at END"
            f"  WHERE a.user_id = EXCLUDED.user_id AND a.sku = EXCLUDED.sku"
            f"  RETURNING a.payment_id, a.state, a.user_id, a.sku, a.reason, a.updated_at,"
            f"    a.updated_at = :at AS moved"
            f"), granted AS ("
            f"  INSERT INTO {q}.grants (payment_id, user_id, sku, status, granted_at)"
            f"  SELECT payment_id, user_id, sku, 'granted', :at FROM access"
            f"  WHERE moved AND state = :granting"
            f"  ON CONFLICT (payment_id) DO NOTHING RETURNING granted_at, revoked_at"
            f"), revoked AS ("
            f"  UPDATE {q}.grants SET status = 'revoked', revoked_at = :at, revoke_reason = :reason"
            f"  WHERE payment_id = :payment_id AND status = 'granted'"
            f"    AND EXISTS (SELECT FROM access WHERE moved AND state = :revoking)"
            f"  RETURNING granted_at, revoked_at"
            f"), changed AS (SELECT * FROM granted UNION ALL SELECT * FROM revoked){{announce}} "
            f"SELECT a.state, a.moved, c.granted_at IS NOT NULL,"
            f"  CASE WHEN a.moved THEN pg_notify(:access_channel, json_build_object("
            f"    'payment_id', a.payment_id, 'state', a.state, 'user_id', a.user_id,"
            f"    'sku', a.sku, 'reason', a.reason, 'granted_at', c.granted_at,"
            f"    'revoked_at', c.revoked_at, 'updated_at', a.updated_at)::text) END "
            f"FROM access AS a LEFT JOIN changed AS c ON true"
        )
        self._decide: TextClause = text(decide.format(announce=""))
        self._decide_announced: TextClause = text(
            decide.format(announce=f", announced AS ({outbox.staging_from('changed')})")
        )

    async def decide(
        self,
        session: AsyncSession,
        payment: PaymentLifecycle,
        moves: Moves,
        *,
        reason: str,
        at: datetime,
        announcement: Mapping[str, Any] | None = None,
    ) -> Decided:
        """Apply ``moves`` to the payment's access (its row created ``pending`` on its first
        event) in one round trip, with the grant change the move makes.

        ``announcement`` is the outbox event of that grant change
        (:meth:`payrail.messaging.outbox.Outbox.parameters`), staged in the same statement and
        only when a grant was created or revoked. The notification on the access channel (sent
        when the state moved) carries the payment's new access, so the requests waiting on it
        answer without reading the database again. :class:`AccessConflict` when the event
        names another user or sku than the payment's row.
        """
        parameters = {
            "payment_id": payment.payment_id,
            "user_id": payment.user_id,
            "sku": payment.sku,
            "moves": json.dumps({old.value: new.value for old, new in moves.next.items()}),
            "granting": moves.granting.value if moves.granting else None,
            "revoking": moves.revoking.value if moves.revoking else None,
            "reason": reason,
            "at": at,
            "access_channel": self.t.access_channel,
            **(announcement or {}),
        }
        statement = self._decide if announcement is None else self._decide_announced
        row = (await session.execute(statement, parameters)).first()
        if row is None:
            raise AccessConflict(
                f"payment {payment.payment_id}: the event's user or sku is not the payment's"
            )
        return Decided(AccessState(row[0]), row[1], row[2])

    async def access(self, conn: AsyncConnection, payment_id: str) -> Access | None:
        """The payment's access, or None for a payment never seen."""
        access, grants = self.t.payment_access, self.t.grants
        result = await conn.execute(
            select(access, grants.c.granted_at, grants.c.revoked_at)
            .select_from(access.outerjoin(grants, grants.c.payment_id == access.c.payment_id))
            .where(access.c.payment_id == payment_id)
        )
        row = result.mappings().first()
        if row is None:
            return None
        return Access(
            payment_id=row["payment_id"],
            state=AccessState(row["state"]),
            user_id=row["user_id"],
            sku=row["sku"],
            reason=row["reason"],
            updated_at=row["updated_at"],
            granted_at=row["granted_at"],
            revoked_at=row["revoked_at"],
        )

    async def grants_of(self, conn: AsyncConnection, user_id: str) -> list[Grant]:
        """Every grant the user ever had, oldest first (revoked ones included)."""
        grants = self.t.grants
        result = await conn.execute(
            select(grants)
            .where(grants.c.user_id == user_id)
            .order_by(grants.c.granted_at, grants.c.id)
        )
        return [_grant(row) for row in result.mappings()]


def _grant(row: RowMapping) -> Grant:
    return Grant(
        user_id=row["user_id"],
        sku=row["sku"],
        payment_id=row["payment_id"],
        status=row["status"],
        granted_at=row["granted_at"],
        revoked_at=row["revoked_at"],
    )
