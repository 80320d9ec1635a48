"""The deal lifecycle on real Postgres: every allowed transition with its money,
every forbidden one refused with the right error and nothing changed, and the
SQL each use case sends."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import msgspec
import pytest
from sqlalchemy import text

from bot.services.errors import (
    AlreadyDone,
    EscrowError,
    InsufficientFunds,
    InvalidInput,
    NotAllowed,
    NotFound,
    SelfDeal,
    UnknownCurrency,
    WrongState,
)
from bot.services.rules import AFTER_DEADLINE, RULES, Action, Role
from bot.services.users import Profile
from bot.services.views import DealView, UserView
from bot.telegram.refusals import refusal_text
from db.events import DealChanged, UserChanged
from db.models import DealStatus, NotificationKind
from db.sql.deals import INSERT_DEAL
from tests.conftest import Services
from tests.integration.helpers import balance, fees, history, ledger, world
from tests.refusals import refuses

PRICE = 250_00  # 250.00 USDT
FEE = 3_75  # 1.5%
START = 1_000_00
SPLIT_PART = 100_00  # of PRICE, to the seller in a split
SPLIT_FEE = 1_50  # 1.5% of SPLIT_PART


@dataclass
class Cast:
    buyer: UserView
    seller: UserView
    stranger: UserView
    admin: UserView

    def actor(self, role: Role) -> UserView:
        return self.seller if role is Role.SELLER else self.buyer


@pytest.fixture
async def cast(services: Services) -> Cast:
    return Cast(
        buyer=await services.user("alice_buyer", funds={"USDT": START}),
        seller=await services.user("bob_seller"),
        stranger=await services.user("mallory_x", funds={"USDT": START}),
        admin=await services.admin(),
    )


async def open_deal(services: Services, cast: Cast, **overrides) -> DealView:
    params = dict(
        role="buyer",
        currency="USDT",
        amount=PRICE,
        description="A vintage lamp, shipped insured",
        counterparty=cast.seller.telegram_id,
    )
    params.update(overrides)
    return (await services.deals.create(cast.buyer, **params)).value.deal


async def deal_in(services: Services, cast: Cast, status: DealStatus) -> DealView:
    """A deal between the cast's buyer and seller, brought to `status`."""
    deal = await open_deal(services, cast)
    deals, b, s = services.deals, cast.buyer, cast.seller
    steps = {
        DealStatus.PENDING: [],
        DealStatus.ACCEPTED: [(deals.accept, s)],
        DealStatus.FUNDED: [(deals.accept, s), (deals.fund, b)],
        DealStatus.DELIVERED: [(deals.accept, s), (deals.fund, b), (deals.deliver, s)],
        DealStatus.RELEASED: [(deals.accept, s), (deals.fund, b), (deals.release, b)],
        DealStatus.REFUNDED: [(deals.accept, s), (deals.fund, b), (deals.cancel, s)],
        DealStatus.CANCELLED: [(deals.cancel, b)],
        DealStatus.DECLINED: [(deals.decline, s)],
    }
    if status is DealStatus.DISPUTED:
        for action, actor in steps[DealStatus.FUNDED]:
            deal = (await action(actor, deal.code)).value
        return (await deals.dispute(b, deal.code, "Nothing arrived")).value
    if status is DealStatus.SPLIT:  # disputed, then settled in part by the admin
        disputed = await deal_in(services, cast, DealStatus.DISPUTED)
        return (await deals.split(cast.admin, disputed.code, SPLIT_PART)).value
    if status is DealStatus.EXPIRED:
        await past_deadline(services, deal)
        (expired,) = (await deals.expire_due()).value
        return expired
    for action, actor in steps[status]:
        deal = (await action(actor, deal.code)).value
    assert deal.status == status
    return deal


async def past_deadline(services: Services, deal: DealView) -> None:
    async with services.ctx.db.engine.begin() as conn:
        await conn.execute(
            text("UPDATE escrows SET deadline_at = now() - interval '1 minute' WHERE id = :id"),
            {"id": deal.id},
        )


async def past_delivery_deadline(services: Services, deal: DealView) -> None:
    async with services.ctx.db.engine.begin() as conn:
        await conn.execute(
            text("UPDATE escrows SET deliver_due_at = now() - interval '1 minute' WHERE id = :i"),
            {"i": deal.id},
        )


async def act(services: Services, action: Action, actor: UserView, deal: DealView):
    method = getattr(services.deals, action.value)
    if action is Action.DISPUTE:
        return await method(actor, deal.code, "It arrived broken")
    return await method(actor, deal.code)


# -- creating ---------------------------------------------------------------------


async def test_create_freezes_the_fee_and_records_history(services, cast, sql, events):
    bob = await services.users.find_by_username("@Bob_Seller")
    sql.start()
    outcome = await services.deals.create(
        cast.buyer,
        role="buyer",
        currency="usdt",
        amount=PRICE,
        description="  A vintage lamp  ",
        counterparty=bob,
    )
    # the creator's standing (their row locked), counterparty, the pace, insert
    assert sql.stop() and sql.count == 4
    deal = outcome.value.deal
    assert outcome.value.invitation is None
    assert (deal.buyer_id, deal.seller_id, deal.creator_id) == (
        cast.buyer.id,
        cast.seller.id,
        cast.buyer.id,
    )
    assert (deal.amount, deal.fee, deal.fee_bps, deal.payout) == (PRICE, FEE, 150, PRICE - FEE)
    assert deal.description == "A vintage lamp"
    assert deal.status == DealStatus.PENDING and deal.version == 1
    assert len(deal.code) == 8 and deal.code.isalnum()
    assert (deal.buyer_name, deal.seller_name) == ("@alice_buyer", "@bob_seller")
    assert deal.deadline_at > deal.created_at
    assert await history(services.ctx.db, deal) == [(cast.buyer.id, None, "pending", None)]
    assert events.published[-1] == DealChanged(
        deal.id,
        deal.code,
        1,
        "pending",
        (cast.buyer.telegram_id, cast.seller.telegram_id),
        cast.buyer.telegram_id,  # who made the move
    )


async def test_create_as_seller_by_telegram_id(services, cast):
    created = await services.deals.create(
        cast.seller,
        role="seller",
        currency="BTC",
        amount=50_000,
        description="Consulting hour",
        counterparty=cast.buyer.telegram_id,
    )
    deal = created.value.deal
    assert (deal.buyer_id, deal.seller_id, deal.creator_id) == (
        cast.buyer.id,
        cast.seller.id,
        cast.seller.id,
    )
    assert deal.fee == 500  # 1% of 0.0005 BTC


async def test_create_with_the_same_key_twice_makes_one_deal(services, cast, sql, events):
    # The wizard's id: a Create pressed again after an unknown outcome (the
    # connection dropped at COMMIT) must find the deal, not make a second one.
    params = dict(
        role="buyer",
        currency="USDT",
        amount=PRICE,
        description="A vintage lamp",
        counterparty=await services.users.find_by_username("bob_seller"),
    )
    sql.start()
    first = await services.deals.create(cast.buyer, **params, create_key="wizard-1")
    # the key's deal (none yet), standing (locked), counterparty, the pace, insert
    assert len(sql.stop()) == 5
    assert len(first.notices) == 1  # the seller is told
    events.published.clear()
    before = await world(services.ctx.db)

    sql.start()
    again = await services.deals.create(cast.buyer, **params, create_key="wizard-1")
    assert len(sql.stop()) == 1  # found by its key, with its invitation if any
    assert again.value == first.value
    assert (again.events, again.notices) == ((), ())  # nobody is told twice
    assert events.published == []
    assert await world(services.ctx.db) == before

    # another wizard makes another deal; another creator's key is theirs alone
    other = await services.deals.create(cast.buyer, **params, create_key="wizard-2")
    theirs = await services.deals.create(cast.stranger, **params, create_key="wizard-1")
    ids = {first.value.deal.id, other.value.deal.id, theirs.value.deal.id}
    assert len(ids) == 3


async def test_create_by_link_with_the_same_key_returns_the_same_invitation(services, cast):
    params = dict(
        role="seller", currency="USDT", amount=PRICE, description="Logo", counterparty=None
    )
    first = (await services.deals.create(cast.seller, **params, create_key="k")).value
    again = (await services.deals.create(cast.seller, **params, create_key="k")).value
    assert first.invitation is not None
    assert again == first
    assert await services.deals.created_with(cast.seller, "k") == first
    assert await services.deals.created_with(cast.seller, "other") is None
    assert await services.deals.created_with(cast.buyer, "k") is None


@pytest.mark.parametrize("key", ["", "x" * 65])
async def test_a_malformed_create_key_is_refused(services, cast, key):
    before = await world(services.ctx.db)
    with pytest.raises(InvalidInput):
        await open_deal(services, cast, create_key=key)
    assert await world(services.ctx.db) == before


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        ({"amount": 99}, InvalidInput, "between 1.00 USDT and 1,000,000.00 USDT"),
        ({"amount": 1_000_000_01}, InvalidInput, "between"),
        ({"amount": -5}, InvalidInput, "between"),
        ({"amount": 10.5}, InvalidInput, "between"),
        ({"currency": "DOGE"}, UnknownCurrency, "Unknown currency"),
        ({"description": "x" * 501}, InvalidInput, "too long: 501 characters, at most 500"),
        ({"description": "   "}, InvalidInput, "can't be empty"),
        ({"counterparty": "@alice_buyer"}, SelfDeal, "with yourself"),
        ({"counterparty": "not a name!"}, InvalidInput, "@username"),
        ({"role": "broker"}, InvalidInput, "buyer or the seller"),
    ],
)
async def test_bad_deal_requests_are_refused_and_change_nothing(
    services, cast, overrides, error, message
):
    before = await world(services.ctx.db)
    with refuses(error, message, services.ctx.currencies):
        await open_deal(services, cast, **overrides)
    assert await world(services.ctx.db) == before


async def test_a_deal_with_yourself_by_telegram_id_is_refused(services, cast):
    with pytest.raises(SelfDeal):
        await open_deal(services, cast, counterparty=cast.buyer.telegram_id)


async def test_the_person_shown_is_checked_again_when_the_deal_is_made(services, cast):
    """The summary named a person; between it and Create the name may move on
    (the deal still goes to that person) or the person may be blocked (refused)."""
    bob = await services.users.find_by_username("bob_seller")
    assert bob is not None
    # Bob renames on Telegram and Carol takes his old name before Create is pressed
    await services.users.register(
        Profile(telegram_id=cast.seller.telegram_id, first_name="Bob", username="bob_renamed")
    )
    carol = await services.user("bob_seller")
    deal = await open_deal(services, cast, counterparty=bob)
    assert (deal.seller_id, deal.seller_name) == (cast.seller.id, "@bob_renamed")
    assert deal.seller_id != carol.id

    # someone the summary did not name is not taken for them (ids must match)
    forged = msgspec.structs.replace(bob, id=carol.id)
    before = await world(services.ctx.db)
    with refuses(NotFound, "no longer on the bot", services.ctx.currencies):
        await open_deal(services, cast, counterparty=forged)
    assert await world(services.ctx.db) == before
    async with services.ctx.db.engine.begin() as conn:
        await conn.execute(
            text("UPDATE users SET status = 'blocked' WHERE id = :id"), {"id": cast.seller.id}
        )
    before = await world(services.ctx.db)
    with refuses(NotAllowed, "can't take part in deals", services.ctx.currencies):
        await open_deal(services, cast, counterparty=bob)
    assert await world(services.ctx.db) == before


# -- every allowed transition ----------------------------------------------------

ALLOWED = [
    (action, status, role, to)
    for action, by_status in RULES.items()
    for status, (role, to) in by_status.items()
]


@pytest.mark.parametrize(
    ("action", "status", "role", "to"),
    ALLOWED,
    ids=[f"{a.value}-{s.value}-by-{r.value}" for a, s, r, _ in ALLOWED],
)
async def test_every_allowed_transition(services, cast, events, action, status, role, to):
    deal = await deal_in(services, cast, status)
    if action in AFTER_DEADLINE:
        await past_delivery_deadline(services, deal)
    buyer_before = await balance(services.ctx.db, cast.buyer.id)
    seller_before = await balance(services.ctx.db, cast.seller.id)
    fees_before = await fees(services.ctx.db)
    actor = cast.seller if role is Role.COUNTERPARTY else cast.actor(role)
    events.published.clear()

    changed = (await act(services, action, actor, deal)).value

    assert changed.status == to
    assert changed.version == deal.version + 1
    assert (await history(services.ctx.db, deal))[-1][:3] == (actor.id, status.value, to.value)
    buyer = await balance(services.ctx.db, cast.buyer.id)
    seller = await balance(services.ctx.db, cast.seller.id)
    a, h = buyer_before
    if to is DealStatus.FUNDED:
        assert buyer == (a - PRICE, h + PRICE)
    elif to is DealStatus.RELEASED:
        assert buyer == (a, h - PRICE)
        assert seller == (seller_before[0] + PRICE - FEE, 0)
        assert await fees(services.ctx.db) == fees_before + FEE
    elif to is DealStatus.REFUNDED:
        assert buyer == (a + PRICE, h - PRICE)
    else:
        assert (buyer, seller) == (buyer_before, seller_before)
    moved = {e.telegram_id for e in events.published if isinstance(e, UserChanged)}
    expected = {
        DealStatus.FUNDED: {cast.buyer.telegram_id},
        DealStatus.RELEASED: {cast.buyer.telegram_id, cast.seller.telegram_id},
        DealStatus.REFUNDED: {cast.buyer.telegram_id},
        # the opener's record counts the dispute (their snapshot shows it)
        DealStatus.DISPUTED: {actor.telegram_id},
    }.get(to, set())
    assert moved == expected
    assert [e for e in events.published if isinstance(e, DealChanged)] == [
        DealChanged(
            deal.id,
            deal.code,
            changed.version,
            to.value,
            (cast.buyer.telegram_id, cast.seller.telegram_id),
            actor.telegram_id,  # who made the move
        )
    ]


async def test_dispute_remembers_where_it_came_from(services, cast):
    deal = await deal_in(services, cast, DealStatus.DELIVERED)
    disputed = (await services.deals.dispute(cast.seller, deal.code, "Buyer went silent")).value
    assert disputed.status_before_dispute == DealStatus.DELIVERED
    assert (await history(services.ctx.db, deal))[-1] == (
        cast.seller.id,
        "delivered",
        "disputed",
        "Buyer went silent",
    )


# -- every forbidden transition ---------------------------------------------------


@pytest.mark.parametrize("status", list(DealStatus))
async def test_every_forbidden_transition_is_refused_and_changes_nothing(services, cast, status):
    deal = await deal_in(services, cast, status)
    before = await world(services.ctx.db)
    tried = 0
    for action in Action:
        rule = RULES[action].get(status)
        for who in ("buyer", "seller", "stranger"):
            actor = getattr(cast, who)
            if who == "stranger":
                expected = NotFound  # a stranger learns nothing about the deal
            elif rule is None:
                expected = WrongState
            else:
                role = rule[0]
                allowed = (
                    (role is Role.BUYER and who == "buyer")
                    or (role is Role.SELLER and who == "seller")
                    or role is Role.EITHER
                    or (role is Role.COUNTERPARTY and who == "seller")
                )
                if allowed:
                    continue
                expected = NotAllowed
            with pytest.raises(expected) as refused:
                await act(services, action, actor, deal)
            tried += 1
            if expected is WrongState:
                assert refused.value.current.status == status
                assert deal.code in refusal_text(refused.value, services.ctx.currencies)
    assert tried >= 7
    assert await world(services.ctx.db) == before


async def test_admin_resolution_only_settles_disputes(services, cast):
    for status in (DealStatus.FUNDED, DealStatus.RELEASED):
        deal = await deal_in(services, cast, status)
        before = await world(services.ctx.db)
        with refuses(WrongState, "no dispute", services.ctx.currencies):
            await services.deals.resolve(cast.admin, deal.code, "refund")
        assert await world(services.ctx.db) == before


async def test_a_non_admin_cannot_resolve(services, cast):
    deal = await deal_in(services, cast, DealStatus.DISPUTED)
    before = await world(services.ctx.db)
    for who in (cast.buyer, cast.seller, cast.stranger):
        with refuses(NotAllowed, "Only an admin", services.ctx.currencies):
            await services.deals.resolve(who, deal.code, "release")
    assert await world(services.ctx.db) == before


@pytest.mark.parametrize("outcome", ["release", "refund"])
async def test_admin_resolves_a_dispute_both_ways(services, cast, sql, outcome):
    deal = await deal_in(services, cast, DealStatus.DISPUTED)
    sql.start()
    resolved = (await services.deals.resolve(cast.admin, deal.code, outcome, "Photos")).value
    assert sql.stop() and sql.count == 3  # lock, transition + history, movement
    buyer = await balance(services.ctx.db, cast.buyer.id)
    seller = await balance(services.ctx.db, cast.seller.id)
    if outcome == "release":
        assert resolved.status == DealStatus.RELEASED
        assert (buyer, seller) == ((START - PRICE, 0), (PRICE - FEE, 0))
        assert await fees(services.ctx.db) == FEE
    else:
        assert resolved.status == DealStatus.REFUNDED
        assert (buyer, seller) == ((START, 0), (0, 0))
        assert await fees(services.ctx.db) == 0
    assert (await history(services.ctx.db, deal))[-1] == (
        cast.admin.id,
        "disputed",
        resolved.status,
        "Photos",
    )


async def test_funding_without_the_money_is_refused(services, cast):
    deal = await open_deal(services, cast, amount=START + 1)
    await services.deals.accept(cast.seller, deal.code)
    before = await world(services.ctx.db)
    with refuses(InsufficientFunds, r"funding needs 1,000\.01 USDT", services.ctx.currencies):
        await services.deals.fund(cast.buyer, deal.code)
    assert await world(services.ctx.db) == before


async def test_an_unknown_deal_code(services, cast):
    with pytest.raises(NotFound):
        await services.deals.fund(cast.buyer, "NOPE1234")


async def test_a_blocked_user_cannot_act(services, cast):
    deal = await deal_in(services, cast, DealStatus.ACCEPTED)
    async with services.ctx.db.engine.begin() as conn:
        await conn.execute(
            text("UPDATE users SET status = 'blocked' WHERE id = :id"), {"id": cast.buyer.id}
        )
    before = await world(services.ctx.db)
    with refuses(NotAllowed, "blocked", services.ctx.currencies):
        await services.deals.fund(cast.buyer, deal.code)
    with refuses(NotAllowed, "blocked", services.ctx.currencies):
        await open_deal(services, cast)
    assert await world(services.ctx.db) == before


# -- money in the ledger -------------------------------------------------------------


async def test_a_completed_deal_leaves_a_balanced_double_entry_trail(services, cast):
    deal = await deal_in(services, cast, DealStatus.RELEASED)
    legs = await ledger(services.ctx.db, f"deal:{deal.id}:")
    b, s = cast.buyer.id, cast.seller.id
    assert legs == [
        ("hold", "available", b, -PRICE),
        ("hold", "held", b, PRICE),
        ("release", "held", b, -PRICE),
        ("release", "available", s, PRICE - FEE),
        ("fee", "fees", None, FEE),
    ]
    assert sum(leg[3] for leg in legs) == 0


# -- statements per use case ----------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "action", "role", "statements"),
    [
        (DealStatus.PENDING, Action.ACCEPT, Role.SELLER, 2),
        (DealStatus.PENDING, Action.DECLINE, Role.SELLER, 2),
        (DealStatus.ACCEPTED, Action.FUND, Role.BUYER, 3),
        (DealStatus.FUNDED, Action.DELIVER, Role.SELLER, 2),
        (DealStatus.DELIVERED, Action.RELEASE, Role.BUYER, 3),
        (DealStatus.FUNDED, Action.DISPUTE, Role.BUYER, 2),
        (DealStatus.PENDING, Action.CANCEL, Role.BUYER, 2),
        (DealStatus.ACCEPTED, Action.CANCEL, Role.BUYER, 2),
        (DealStatus.FUNDED, Action.CANCEL, Role.SELLER, 3),
    ],
)
async def test_statements_per_use_case(services, cast, sql, status, action, role, statements):
    deal = await deal_in(services, cast, status)
    sql.start()
    await act(services, action, cast.actor(role), deal)
    assert len(sql.stop()) == statements


async def test_a_refusal_costs_one_statement(services, cast, sql):
    deal = await deal_in(services, cast, DealStatus.RELEASED)
    sql.start()
    with pytest.raises(WrongState):
        await services.deals.release(cast.buyer, deal.code)
    assert len(sql.stop()) == 1


async def test_a_move_already_made_is_told_apart_by_who_made_it(services, cast, sql):
    # Released by the buyer: the buyer's release again is their own move, done;
    # a refund the seller asks for meanwhile is not theirs to claim.
    deal = await deal_in(services, cast, DealStatus.RELEASED)
    sql.start()
    with pytest.raises(AlreadyDone) as done:
        await services.deals.release(cast.buyer, deal.code)
    assert len(sql.stop()) == 1  # who moved it last is read with the lock
    assert done.value.current.status == DealStatus.RELEASED
    funded = await deal_in(services, cast, DealStatus.FUNDED)
    with pytest.raises(WrongState) as refused:
        await services.deals.fund(cast.seller, funded.code)
    assert not isinstance(refused.value, AlreadyDone)


async def test_events_are_published_only_after_commit(services, cast, events):
    deal = await deal_in(services, cast, DealStatus.ACCEPTED)
    events.published.clear()
    with pytest.raises(EscrowError):
        await services.deals.release(cast.buyer, deal.code)
    assert events.published == []
    outcome = await services.deals.fund(cast.buyer, deal.code)
    assert tuple(events.published) == outcome.events
    # the published user version is what a fresh read sees
    (user_event,) = [e for e in outcome.events if isinstance(e, UserChanged)]
    async with services.ctx.db.engine.connect() as conn:
        version = await conn.scalar(
            text("SELECT version FROM users WHERE id = :id"), {"id": cast.buyer.id}
        )
    assert user_event.version == version


# -- expiry ----------------------------------------------------------------------------


async def test_expiry_closes_only_overdue_unfunded_deals(services, cast, sql):
    pending = await open_deal(services, cast)
    accepted = await deal_in(services, cast, DealStatus.ACCEPTED)
    funded = await deal_in(services, cast, DealStatus.FUNDED)
    fresh = await open_deal(services, cast)
    invited = (
        await services.deals.create(
            cast.buyer,
            role="buyer",
            currency="USDT",
            amount=PRICE,
            description="by link",
            counterparty=None,
        )
    ).value
    for deal in (pending, accepted, funded, invited.deal):
        await past_deadline(services, deal)

    sql.start()
    expired = (await services.deals.expire_due()).value
    assert len(sql.stop()) == 1
    assert {d.code for d in expired} == {pending.code, accepted.code, invited.deal.code}
    assert all(d.status == DealStatus.EXPIRED for d in expired)
    assert (await services.deals.get(cast.buyer, funded.code)).status == DealStatus.FUNDED
    assert (await services.deals.get(cast.buyer, fresh.code)).status == DealStatus.PENDING
    assert (await history(services.ctx.db, accepted))[-1] == (
        None,
        "accepted",
        "expired",
        "not accepted and funded by the deadline",
    )
    with refuses(Exception, "already been used or withdrawn", services.ctx.currencies):
        await services.deals.accept_invitation(cast.stranger, invited.invitation.code)
    assert (await services.deals.expire_due()).value == []


async def test_past_its_deadline_a_deal_is_neither_accepted_nor_funded_before_the_job_runs(
    services, cast
):
    pending = await deal_in(services, cast, DealStatus.PENDING)
    accepted = await deal_in(services, cast, DealStatus.ACCEPTED)
    invited = (
        await services.deals.create(
            cast.buyer, role="buyer", currency="USDT", amount=PRICE,
            description="by link", counterparty=None,
        )
    ).value  # fmt: skip
    for deal in (pending, accepted, invited.deal):
        await past_deadline(services, deal)
    before = await world(services.ctx.db)
    said = (
        r"Deal {code} had to be accepted and funded by .+\. That time has passed, so it "
        r"can no longer be accepted or funded\. Nothing was changed\."
    )
    with refuses(WrongState, said.format(code=pending.code), services.ctx.currencies):
        await services.deals.accept(cast.seller, pending.code)
    with refuses(WrongState, said.format(code=accepted.code), services.ctx.currencies):
        await services.deals.fund(cast.buyer, accepted.code)
    with refuses(WrongState, said.format(code=invited.deal.code), services.ctx.currencies):
        await services.deals.accept_invitation(cast.stranger, invited.invitation.code)
    assert await world(services.ctx.db) == before  # no money held, no status moved
    # declining or cancelling it is still open; the job closes the rest
    assert (await services.deals.cancel(cast.buyer, accepted.code)).value.status == (
        DealStatus.CANCELLED
    )
    expired = (await services.deals.expire_due()).value
    assert {d.code for d in expired} == {pending.code, invited.deal.code}


# -- reads -----------------------------------------------------------------------------


async def test_only_parties_and_admins_see_a_deal(services, cast):
    deal = await open_deal(services, cast)
    assert (await services.deals.get(cast.seller, f" #{deal.code.lower()} ")).id == deal.id
    with pytest.raises(NotFound):
        await services.deals.get(cast.stranger, deal.code)
    assert (await services.deals.get(cast.admin, deal.code, as_admin=True)).id == deal.id


# -- confirmations at the version they were asked at ---------------------------------


async def test_a_confirmation_asked_before_the_deal_moved_on_does_nothing(services, cast, sql):
    # "Yes, cancel the deal" was asked while the deal was accepted; the buyer
    # funded it since, so the same press would now cancel *and refund*.
    deal = await deal_in(services, cast, DealStatus.ACCEPTED)
    asked_at = deal.version
    funded = (await services.deals.fund(cast.buyer, deal.code)).value
    before = await world(services.ctx.db)

    sql.start()
    with refuses(WrongState, "changed since you were asked", services.ctx.currencies) as refused:
        await services.deals.cancel(cast.seller, deal.code, expected_version=asked_at)
    assert len(sql.stop()) == 1  # the lock, and nothing else
    assert refused.value.current.status == DealStatus.FUNDED
    assert refused.value.current.version == funded.version
    assert await world(services.ctx.db) == before
    assert await balance(services.ctx.db, cast.buyer.id) == (START - PRICE, PRICE)

    # asked again at the version it is now, the seller's cancel refunds the buyer
    refunded = await services.deals.cancel(cast.seller, deal.code, expected_version=funded.version)
    assert refunded.value.status == DealStatus.REFUNDED
    assert await balance(services.ctx.db, cast.buyer.id) == (START, 0)


async def test_a_release_confirmed_at_an_older_version_pays_nothing(services, cast):
    deal = await deal_in(services, cast, DealStatus.FUNDED)
    disputed = (await services.deals.dispute(cast.seller, deal.code, "Not paid for")).value
    before = await world(services.ctx.db)
    with refuses(WrongState, "changed since you were asked", services.ctx.currencies) as refused:
        await services.deals.release(cast.buyer, deal.code, expected_version=deal.version)
    assert refused.value.current.status == DealStatus.DISPUTED
    assert refused.value.current.version == disputed.version
    assert await world(services.ctx.db) == before


# -- split settlements --------------------------------------------------------------------


async def test_admin_splits_a_dispute_in_one_balanced_movement(services, cast, sql, events):
    deal = await deal_in(services, cast, DealStatus.DISPUTED)
    events.published.clear()
    sql.start()
    split = await services.deals.split(cast.admin, deal.code, SPLIT_PART)
    assert len(sql.stop()) == 3  # lock, transition + history + notices, one movement
    settled = split.value
    assert settled.status == DealStatus.SPLIT
    assert (settled.split_seller, settled.split_fee) == (SPLIT_PART, SPLIT_FEE)
    assert settled.refund == PRICE - SPLIT_PART
    # the seller gets their part less the fee on it; the buyer the rest, fee-free
    assert await balance(services.ctx.db, cast.buyer.id) == (START - SPLIT_PART, 0)
    assert await balance(services.ctx.db, cast.seller.id) == (SPLIT_PART - SPLIT_FEE, 0)
    assert await fees(services.ctx.db) == SPLIT_FEE
    b, s = cast.buyer.id, cast.seller.id
    assert await ledger(services.ctx.db, f"deal:{deal.id}:split") == [
        ("release", "held", b, -SPLIT_PART),
        ("release", "available", s, SPLIT_PART - SPLIT_FEE),
        ("fee", "fees", None, SPLIT_FEE),
        ("refund", "held", b, SPLIT_PART - PRICE),
        ("refund", "available", b, PRICE - SPLIT_PART),
    ]
    assert (await history(services.ctx.db, deal))[-1] == (
        cast.admin.id,
        "disputed",
        "split",
        "resolved by admin: split",
    )
    # both parties are told, and both wallets' snapshots are invalidated
    assert sorted(n.user_id for n in split.notices) == sorted([b, s])
    assert {n.kind for n in split.notices} == {"resolve"}
    moved = {e.telegram_id for e in events.published if isinstance(e, UserChanged)}
    assert moved == {cast.buyer.telegram_id, cast.seller.telegram_id}


@pytest.mark.parametrize("part", [0, -1, PRICE, PRICE + 1, 10.5])
async def test_a_split_outside_the_amount_is_refused_and_changes_nothing(services, cast, sql, part):
    deal = await deal_in(services, cast, DealStatus.DISPUTED)
    before = await world(services.ctx.db)
    sql.start()
    with refuses(InvalidInput, r"less than the deal's 250\.00 USDT", services.ctx.currencies):
        await services.deals.split(cast.admin, deal.code, part)
    assert len(sql.stop()) == 1
    assert await world(services.ctx.db) == before


async def test_a_split_is_an_admins_on_an_open_dispute_as_it_was_asked(services, cast):
    disputed = await deal_in(services, cast, DealStatus.DISPUTED)
    before = await world(services.ctx.db)
    for who in (cast.buyer, cast.seller, cast.stranger):
        with refuses(NotAllowed, "Only an admin", services.ctx.currencies):
            await services.deals.split(who, disputed.code, SPLIT_PART)
    assert await world(services.ctx.db) == before
    with refuses(WrongState, "changed since you were asked", services.ctx.currencies):
        await services.deals.split(
            cast.admin, disputed.code, SPLIT_PART, expected_version=disputed.version - 1
        )
    funded = await deal_in(services, cast, DealStatus.FUNDED)
    with refuses(WrongState, "no dispute to settle", services.ctx.currencies):
        await services.deals.split(cast.admin, funded.code, SPLIT_PART)
    # pressed again, the admin's own split is the success it was; another is not
    split = await services.deals.split(cast.admin, disputed.code, SPLIT_PART)
    with pytest.raises(AlreadyDone):
        await services.deals.split(cast.admin, disputed.code, SPLIT_PART)
    with refuses(WrongState, "already split", services.ctx.currencies) as refused:
        await services.deals.split(cast.admin, disputed.code, SPLIT_PART + 1)
    assert not isinstance(refused.value, AlreadyDone)
    with refuses(WrongState, "already split", services.ctx.currencies):
        await services.deals.resolve(cast.admin, disputed.code, "refund")
    assert await balance(services.ctx.db, cast.seller.id) == (SPLIT_PART - SPLIT_FEE, 0)
    assert split.value.status == DealStatus.SPLIT


# -- blocked parties -----------------------------------------------------------------------


async def block(services: Services, user: UserView) -> None:
    async with services.ctx.db.engine.begin() as conn:
        await conn.execute(
            text("UPDATE users SET status = 'blocked' WHERE id = :id"), {"id": user.id}
        )


async def test_a_blocked_party_stops_a_deal_going_forward_and_nothing_else(services, cast, sql):
    accepted = await deal_in(services, cast, DealStatus.ACCEPTED)
    pending = await open_deal(services, cast)
    funded = await deal_in(services, cast, DealStatus.FUNDED)
    await block(services, cast.seller)
    before = await world(services.ctx.db)
    currencies = services.ctx.currencies
    sql.start()
    with refuses(NotAllowed, "one of its parties is blocked", currencies):
        await services.deals.fund(cast.buyer, accepted.code)
    assert len(sql.stop()) == 1  # the parties' standing is read with the lock
    with refuses(NotAllowed, "blocked by the admins", currencies):
        await services.deals.accept(cast.seller, pending.code)
    with refuses(NotAllowed, "can't take part in deals", currencies):
        await open_deal(services, cast)
    assert await world(services.ctx.db) == before
    # the buyer may still call off, release, or dispute what is funded; admins settle
    await services.deals.cancel(cast.buyer, pending.code)
    disputed = (await services.deals.dispute(cast.buyer, funded.code, "Seller vanished")).value
    await services.deals.resolve(cast.admin, disputed.code, "refund")
    assert await balance(services.ctx.db, cast.buyer.id) == (START, 0)


async def test_a_block_committed_after_the_lock_is_still_refused_by_the_statement(services, cast):
    accepted = await deal_in(services, cast, DealStatus.ACCEPTED)
    before = await world(services.ctx.db)
    deals = services.deals
    async with services.ctx.db.unit_of_work() as uow:
        deal, locked = await deals._lock(uow, cast.buyer, accepted.code)
        assert locked.seller_status == "active"
        await block(services, cast.seller)  # another connection, committed meanwhile
        with refuses(NotAllowed, "one of its parties is blocked", services.ctx.currencies):
            await deals._transition(
                uow, deal, cast.buyer.id, DealStatus.FUNDED, None, notify=NotificationKind.FUND
            )
    assert {k: v for k, v in (await world(services.ctx.db)).items() if k != "users"} == {
        k: v for k, v in before.items() if k != "users"
    }


async def test_a_deal_with_a_blocked_party_is_never_inserted(services, cast):
    await block(services, cast.seller)
    params = {
        "code": "BLOCKED1", "creator_id": cast.buyer.id, "buyer_id": cast.buyer.id,
        "seller_id": cast.seller.id, "amount": PRICE, "fee": FEE, "fee_bps": 150,
        "currency": "USDT", "description": "x", "deadline": timedelta(hours=1),
        "create_key": None, "to_stranger": False, "notify": None, "actor_id": cast.buyer.id,
        "note": None,
        "grace": timedelta(seconds=30), "admin_chats": [],
    }  # fmt: skip
    async with services.ctx.db.engine.begin() as conn:
        assert (await conn.execute(INSERT_DEAL, params)).first() is None
