"""Reading and writing the entitlements schema.

Writes happen in the inbox consumer's transaction: :meth:`AccessStore.lock` creates or locks the
payment's access row (so two deliveries of one payment's events, even on two instances, apply
one after the other), :meth:`AccessStore.apply` records the decision. Every state change also
sends ``NOTIFY`` on the access channel, which PostgreSQL delivers only when (and if) the
transaction commits: the long-polling readers wake exactly when the change is visible, and
learn the new access from the notification itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import RowMapping, func, literal, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from entitlements.domain import AccessState, Decision, Effect
from entitlements.tables import EntitlementsTables, entitlements_tables
from payrail.contracts.payments import PaymentLifecycle


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


class AccessStore:
    def __init__(self, schema: str) -> None:
        self.t: EntitlementsTables = entitlements_tables(schema)

    async def lock(self, session: AsyncSession, payment: PaymentLifecycle) -> AccessState:
        """The payment's current state, its row created (``pending``) or locked until commit."""
        t = self.t.payment_access
        statement = insert(t).values(
            payment_id=payment.payment_id, user_id=payment.user_id, sku=payment.sku
        )
        state = await session.scalar(
            statement.on_conflict_do_update(
                index_elements=[t.c.payment_id], set_={"payment_id": statement.excluded.payment_id}
            ).returning(t.c.state)
        )
        return AccessState(state)

    async def apply(
        self,
        session: AsyncSession,
        payment_id: str,
        decision: Decision,
        *,
        reason: str,
        at: datetime,
    ) -> Grant | None:
        """Record ``decision`` for a payment locked by :meth:`lock`; the grant it created or
        revoked, if any (None when the database already had it: nothing to announce).

        The notification carries the payment's new access as JSON (:func:`access_json`), so
        the requests waiting on it answer without reading the database again.
        """
        access = self.t.payment_access
        updated = await session.execute(
            update(access)
            .where(access.c.payment_id == payment_id)
            .values(state=decision.state.value, reason=reason, updated_at=at)
            .returning(access)
        )
        row = updated.mappings().one()
        grant = await self._grant_effect(session, payment_id, decision.effect, reason, at)
        now = Access(
            payment_id=payment_id,
            state=decision.state,
            user_id=row["user_id"],
            sku=row["sku"],
            reason=reason,
            updated_at=at,
            granted_at=grant.granted_at if grant else None,
            revoked_at=grant.revoked_at if grant else None,
        )
        await session.execute(select(func.pg_notify(self.t.access_channel, access_json(now))))
        return grant

    async def _grant_effect(
        self, session: AsyncSession, payment_id: str, effect: Effect, reason: str, at: datetime
    ) -> Grant | None:
        access, grants = self.t.payment_access, self.t.grants
        if effect is Effect.GRANT:
            granted = insert(grants).from_select(
                ["payment_id", "user_id", "sku", "status", "granted_at"],
                select(
                    access.c.payment_id,
                    access.c.user_id,
                    access.c.sku,
                    literal("granted", grants.c.status.type),
                    literal(at, grants.c.granted_at.type),
                ).where(access.c.payment_id == payment_id),
            )
            result = await session.execute(
                granted.on_conflict_do_nothing(index_elements=[grants.c.payment_id]).returning(
                    *grants.c
                )
            )
        elif effect is Effect.REVOKE:
            result = await session.execute(
                update(grants)
                .where(grants.c.payment_id == payment_id, grants.c.status == "granted")
                .values(status="revoked", revoked_at=at, revoke_reason=reason)
                .returning(*grants.c)
            )
        else:
            return None
        row = result.mappings().first()
        return _grant(row) if row is not None else None

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


def access_json(access: Access) -> str:
    """A payment's access as the JSON the API answers (and the access channel carries)."""
    return json.dumps(
        {
            "payment_id": access.payment_id,
            "state": access.state.value,
            "user_id": access.user_id,
            "sku": access.sku,
            "reason": access.reason,
            "granted_at": _iso(access.granted_at),
            "revoked_at": _iso(access.revoked_at),
            "updated_at": _iso(access.updated_at),
        }
    )


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _grant(row: RowMapping) -> Grant:
    return Grant(
        user_id=row["user_id"],
        sku=row["sku"],
        payment_id=row["payment_id"],
        status=row["status"],
        granted_at=row["granted_at"],
        revoked_at=row["revoked_at"],
    )
