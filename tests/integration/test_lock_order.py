"""Every path that locks a deal and its invitations takes the deal first.

Accepting or declining an invitation used to lock the invitation and then the
deal, while cancelling (and every final transition) and the expiry job lock
the deal and then revoke or expire its invitations: two transactions could
each hold what the other wanted, and Postgres broke the deadlock after
`deadlock_timeout` by failing one (retried whole). Here each pair is run with
one side held after its first statement while the other runs into it, so
the old order deadlocks every time, and then at random many times over.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import text

from bot.services.errors import EscrowError, InvitationUnavailable, Refusal, WrongState
from db import UnitOfWork
from tests.conftest import Services

RETRIED = "transaction retried after 40P01"

# (deal status, invitation status) after any serial order of the two sides
CONSISTENT = {
    ("accepted", "accepted"),  # joined; a later cancel leaves the invitation as used
    ("cancelled", "accepted"),
    ("cancelled", "revoked"),
    ("declined", "declined"),
    ("expired", "expired"),
    # past its deadline, an accept is refused (nothing changed) while the
    # expiry job skipped the deal its lock held: the job's next run expires it
    ("pending", "active"),
}


@dataclass
class Hold:
    """Keeps one task's transaction open after its first statement."""

    reached: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)


HOLD: contextvars.ContextVar[Hold | None] = contextvars.ContextVar("hold", default=None)


@pytest.fixture
def holdable(monkeypatch: pytest.MonkeyPatch) -> None:
    """UnitOfWork.execute that stops after the first statement of a task that
    set HOLD (its locks stay taken) until the test releases it."""
    execute = UnitOfWork.execute

    async def held_execute(self: UnitOfWork, statement: Any, params: Any = None) -> Any:
        result = await execute(self, statement, params)
        hold = HOLD.get()
        if hold is not None and not hold.reached.is_set():
            hold.reached.set()
            await hold.release.wait()
        return result

    monkeypatch.setattr(UnitOfWork, "execute", held_execute)


@dataclass
class Race:
    code: str  # the deal
    invitation: str
    invitee: Any
    sides: dict[str, Callable[[], Awaitable[Any]]]


async def invited_deal(services: Services, rival: str, op: str) -> Race:
    seller = await services.user()
    invitee_id = 500_000 + random.randrange(10**6)
    created = (
        await services.deals.create(
            seller,
            role="seller",
            currency="USDT",
            amount=10_00,
            description="A lamp",
            counterparty=invitee_id,  # addressed, so it can be declined
        )
    ).value
    invitee = await services.user(telegram_id=invitee_id)
    if rival == "expire":
        async with services.ctx.db.engine.begin() as conn:
            await conn.execute(
                text("UPDATE escrows SET deadline_at = now() - interval '1 second' WHERE id = :id"),
                {"id": created.deal.id},
            )
    code, invitation = created.deal.code, created.invitation.code
    invitee_side = (
        services.deals.accept_invitation if op == "accept" else services.deals.decline_invitation
    )
    return Race(
        code,
        invitation,
        invitee,
        {
            "invitee": lambda: invitee_side(invitee, invitation),
            "rival": (
                (lambda: services.deals.cancel(seller, code))
                if rival == "cancel"
                else (lambda: services.deals.expire_due())
            ),
        },
    )


async def waiting_on_a_lock(services: Services) -> int:
    async with services.ctx.db.engine.connect() as conn:
        return await conn.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        )


async def outcome(services: Services, race: Race) -> tuple[str, str]:
    async with services.ctx.db.engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT e.status, i.status AS invitation FROM escrows e"
                    " JOIN invitations i ON i.escrow_id = e.id WHERE e.code = :c"
                ),
                {"c": race.code},
            )
        ).one()
    return row.status, row.invitation


def check(race_outcome: tuple[str, str], results: dict[str, Any], op: str) -> None:
    assert race_outcome in CONSISTENT, (race_outcome, results)
    for side, result in results.items():
        # refusals are fine (the other side was first); nothing else is
        assert not isinstance(result, BaseException) or isinstance(result, EscrowError), (
            side,
            result,
        )
    invitee = results["invitee"]
    if isinstance(invitee, WrongState):  # accepting a deal past its deadline
        assert op == "accept" and invitee.code is Refusal.PAST_DEADLINE, invitee
        assert race_outcome in (("pending", "active"), ("expired", "expired"))
    elif isinstance(invitee, BaseException):
        assert isinstance(invitee, InvitationUnavailable), invitee
        assert race_outcome[1] in ("revoked", "expired")
    else:
        assert race_outcome[1] == ("accepted" if op == "accept" else "declined")


@pytest.mark.parametrize("op", ["accept", "decline"])
@pytest.mark.parametrize("rival", ["cancel", "expire"])
@pytest.mark.parametrize("first", ["invitee", "rival"])
async def test_one_side_holding_its_first_lock_never_deadlocks_the_other(
    services, holdable, caplog, op, rival, first
):
    caplog.set_level(logging.INFO, logger="bot.services.base")
    race = await invited_deal(services, rival, op)
    second = "rival" if first == "invitee" else "invitee"
    hold = Hold()

    async def held() -> Any:
        HOLD.set(hold)
        return await race.sides[first]()

    holder = asyncio.create_task(held())
    await asyncio.wait_for(hold.reached.wait(), 10)
    other = asyncio.create_task(race.sides[second]())
    # the second side runs into the first one's lock (or past it, SKIP LOCKED)
    for _ in range(500):
        if other.done() or await waiting_on_a_lock(services):
            break
        await asyncio.sleep(0.01)
    hold.release.set()
    done = await asyncio.gather(holder, other, return_exceptions=True)
    results = dict(zip((first, second), done, strict=True))

    assert [r.getMessage() for r in caplog.records if RETRIED in r.getMessage()] == []
    check(await outcome(services, race), results, op)


async def test_many_rounds_at_random_never_deadlock(services, caplog):
    caplog.set_level(logging.INFO, logger="bot.services.base")
    rng = random.Random(15)
    outcomes = set()
    for _ in range(40):
        op, rival = rng.choice(["accept", "decline"]), rng.choice(["cancel", "expire"])
        race = await invited_deal(services, rival, op)
        sides = list(race.sides.items())
        rng.shuffle(sides)
        done = await asyncio.gather(*(side() for _, side in sides), return_exceptions=True)
        results = {name: result for (name, _), result in zip(sides, done, strict=True)}
        race_outcome = await outcome(services, race)
        check(race_outcome, results, op)
        outcomes.add(race_outcome)
    assert [r.getMessage() for r in caplog.records if RETRIED in r.getMessage()] == []
    assert len(outcomes) >= 3  # the races really went more than one way
