"""Reading and writing the entitlements schema.

Writes happen in the inbox consumer's transaction: :meth:`AccessStore.lock` creates or locks the
payment's access row (so two deliveries of one payment's events, even on two instances, apply
one after the other), :meth:`AccessStore.apply` records the decision. Every state change also
sends ``NOTIFY`` on the access channel, which PostgreSQL delivers only when (and if) the
transaction commits: the long-polling readers wake exactly when the change is visible, and
learn the new access from the notification itself.

Each of the two is one prebuilt statement (one round trip, no SQL construction per event): the
state change, the grant, its outbox row and the notification go together, because at a few
hundred grants a second every statement's driver and network work is CPU the service needs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import RowMapping, TextClause, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from entitlements.domain import AccessState, Decision, Effect
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
class Locked:
    """A payment's access row as :meth:`AccessStore.lock` found (or created) it."""

    state: AccessState
    user_id: str
    sku: str


class AccessStore:
    def __init__(self, schema: str) -> None:
        self.t: EntitlementsTables = entitlements_tables(schema)
        outbox = Outbox(schema)
        q = f'"{self.t.schema}"'
        self._lock: TextClause = text(
            f"INSERT INTO {q}.payment_access AS a (payment_id, user_id, sku) "
            "VALUES (:payment_id, :user_id, :sku) "
            "ON CONFLICT (payment_id) DO UPDATE SET payment_id = EXCLUDED.payment_id "
            "RETURNING a.state, a.user_id, a.sku"
        )
        # One statement per decision: the new state, the grant change (``:effect`` picks the
        # insert or the revocation; the unique payment_id makes a second grant nothing), the
        # announcement when there is one, and the notification of the access as it now is
        # (the access route's answer, as JSON built by PostgreSQL).
        change = (
            f"WITH access AS ("
            f"  UPDATE {q}.payment_access SET state = :state, reason = :reason, updated_at = :at"
            f"  WHERE payment_id = :payment_id"
            f"  RETURNING payment_id, state, user_id, sku, reason, updated_at"
            f"), granted AS ("
            f"  INSERT INTO {q}.grants (payment_id, user_id, sku, status, granted_at)"
            f"  SELECT payment_id, user_id, sku, 'granted', :at FROM access"
            f"  WHERE :effect = '{Effect.GRANT.value}'"
            f"  ON CONFLICT (payment_id) DO NOTHING RETURNING granted_at, revoked_at"
            f"), revoked AS ("
            f"  UPDATE {q}.grants SET status = 'revoked', revoked_at = :at, revoke_reason = :reason"
            f"  WHERE payment_id = :payment_id AND status = 'granted'"
            f"  AND :effect = '{Effect.REVOKE.value}'"
            f"  RETURNING granted_at, revoked_at"
            f"), changed AS (SELECT * FROM granted UNION ALL SELECT * FROM revoked){{announce}} "
            f"SELECT pg_notify(:access_channel, json_build_object("
            f"  'payment_id', a.payment_id, 'state', a.state, 'user_id', a.user_id,"
            f"  'sku', a.sku, 'reason', a.reason, 'granted_at', c.granted_at,"
            f"  'revoked_at', c.revoked_at, 'updated_at', a.updated_at)::text),"
            f"  c.granted_at IS NOT NULL "
            f"FROM access AS a LEFT JOIN changed AS c ON true"
        )
        self._change: TextClause = text(change.format(announce=""))
        self._change_announced: TextClause = text(
            change.format(announce=f", announced AS ({outbox.staging_from('changed')})")
        )

    async def lock(self, session: AsyncSession, payment: PaymentLifecycle) -> Locked:
        """The payment's access row, created (``pending``) or locked until commit."""
        row = (
            await session.execute(
                self._lock,
                {"payment_id": payment.payment_id, "user_id": payment.user_id, "sku": payment.sku},
            )
        ).one()
        return Locked(AccessState(row[0]), row[1], row[2])

    async def apply(
        self,
        session: AsyncSession,
        payment_id: str,
        decision: Decision,
        *,
        reason: str,
        at: datetime,
        announcement: Mapping[str, Any] | None = None,
    ) -> bool:
        """Record ``decision`` for a payment locked by :meth:`lock`, in one round trip; True
        when it created or revoked a grant (False when the database already had it: then
        nothing is announced either).

        ``announcement`` is the outbox event of the grant change
        (:meth:`payrail.messaging.outbox.Outbox.parameters`), staged in the same statement and
        only when the change happened. The notification on the access channel carries the
        payment's new access, so the requests waiting on it answer without reading the
        database again.
        """
        parameters = {
            "payment_id": payment_id,
            "state": decision.state.value,
            "reason": reason,
            "at": at,
            "effect": decision.effect.value,
            "access_channel": self.t.access_channel,
            **(announcement or {}),
        }
        statement = self._change if announcement is None else self._change_announced
        changed: bool = (await session.execute(statement, parameters)).one()[1]
        return changed

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
