"""Deals with people who are not on the bot yet, and open invitation links."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from bot.services.errors import InvitationUnavailable, NotAllowed, SelfDeal
from bot.services.reads import ReadService
from bot.services.users import Profile
from db.models import DealStatus
from tests.conftest import Services
from tests.integration.helpers import history, world
from tests.refusals import refuses


async def invite(services: Services, creator, counterparty, role="seller"):
    return (
        await services.deals.create(
            creator,
            role=role,
            currency="USDT",
            amount=40_00,
            description="Logo design",
            counterparty=counterparty,
        )
    ).value


async def test_an_unknown_username_gets_an_invitation_claimed_on_registration(services, sql):
    seller = await services.user("sally_seller")
    sql.start()
    created = await invite(services, seller, "@Newcomer_Ned")
    # standing (locked), the pace, deal, invitation (no lookup by name)
    assert sql.stop() and sql.count == 4
    deal, invitation = created.deal, created.invitation
    assert (deal.buyer_id, deal.seller_id) == (None, seller.id)
    assert invitation.username == "newcomer_ned" and invitation.telegram_id is None
    assert len(invitation.code) >= 22 and invitation.deal_code == deal.code

    ned = (
        await services.users.register(
            Profile(telegram_id=777, first_name="Ned", username="Newcomer_Ned")
        )
    ).value
    # registration binds the invitation to Ned's Telegram id (the hot lookup)
    async with services.ctx.db.engine.connect() as conn:
        bound = await conn.scalar(
            text("SELECT telegram_id FROM invitations WHERE code = :c"), {"c": invitation.code}
        )
    assert bound == 777

    preview = await services.deals.preview_invitation(ned, invitation.code)
    assert preview.deal.id == deal.id and preview.addressed
    joined = (await services.deals.accept_invitation(ned, invitation.code)).value
    assert joined.status == DealStatus.ACCEPTED
    assert (joined.buyer_id, joined.seller_id) == (ned.id, seller.id)
    assert joined.buyer_name == "@Newcomer_Ned"
    assert (await history(services.ctx.db, deal))[-1] == (
        ned.id,
        "pending",
        "accepted",
        "joined by invitation",
    )
    with refuses(InvitationUnavailable, "already a party", services.ctx.currencies):
        await services.deals.accept_invitation(ned, invitation.code)


async def test_a_username_given_to_create_only_ever_invites_that_name(services):
    """Only a person the creator was shown (a `Person`) is bound to a deal; a
    bare @username is an invitation addressed to the name, even when someone
    on the bot holds it now: its holder joins through the link, or nobody."""
    seller = await services.user("plain_seller")
    holder = await services.user("Name_Holder")
    created = await invite(services, seller, "@name_holder")
    assert (created.deal.buyer_id, created.deal.seller_id) == (None, seller.id)
    assert created.invitation is not None
    assert (created.invitation.username, created.invitation.telegram_id) == ("name_holder", None)
    joined = (
        await services.deals.accept_invitation(holder, created.invitation.code, "Name_Holder")
    ).value
    assert (joined.buyer_id, joined.status) == (holder.id, DealStatus.ACCEPTED)


async def test_an_invitation_to_your_own_username_is_refused(services):
    seller = await services.user("Own_Name")
    before = await world(services.ctx.db)
    with refuses(SelfDeal, "with yourself", services.ctx.currencies):
        await invite(services, seller, "@own_name")
    assert await world(services.ctx.db) == before


async def test_an_unregistered_telegram_id_is_invited_by_id(services):
    buyer = await services.user("bella_buyer")
    created = await invite(services, buyer, 4242, role="buyer")
    assert created.invitation.telegram_id == 4242
    other = await services.user("someone_else")
    with refuses(InvitationUnavailable, "addressed to someone else", services.ctx.currencies):
        await services.deals.accept_invitation(other, created.invitation.code)
    target = await services.user("the_target", telegram_id=4242)
    joined = (await services.deals.accept_invitation(target, created.invitation.code)).value
    assert (joined.buyer_id, joined.seller_id) == (buyer.id, target.id)


async def test_an_open_link_is_for_the_first_taker(services):
    seller = await services.user("open_seller")
    created = await invite(services, seller, None)
    assert created.invitation.telegram_id is None and created.invitation.username is None
    first, second = await services.user("first_taker"), await services.user("second_taker")
    with refuses(NotAllowed, "open to anyone", services.ctx.currencies):
        await services.deals.decline_invitation(first, created.invitation.code)
    await services.deals.accept_invitation(first, created.invitation.code)
    before = await world(services.ctx.db)
    with refuses(InvitationUnavailable, "already been used", services.ctx.currencies):
        await services.deals.accept_invitation(second, created.invitation.code)
    with refuses(InvitationUnavailable, "already been used", services.ctx.currencies):
        await services.deals.preview_invitation(second, created.invitation.code)
    assert await world(services.ctx.db) == before


async def test_the_creator_cannot_take_their_own_invitation(services):
    seller = await services.user("self_seller")
    created = await invite(services, seller, None)
    with pytest.raises(SelfDeal):
        await services.deals.accept_invitation(seller, created.invitation.code)


async def test_declining_an_addressed_invitation_declines_the_deal(services):
    seller = await services.user("decl_seller")
    created = await invite(services, seller, "@decl_buyer")
    buyer = await services.user("decl_buyer")
    declined = (await services.deals.decline_invitation(buyer, created.invitation.code)).value
    assert declined.status == DealStatus.DECLINED
    with pytest.raises(InvitationUnavailable):
        await services.deals.accept_invitation(buyer, created.invitation.code)


async def test_cancelling_a_deal_revokes_its_link(services):
    seller = await services.user("cancel_seller")
    created = await invite(services, seller, None)
    await services.deals.cancel(seller, created.deal.code)
    taker = await services.user("late_taker")
    with refuses(InvitationUnavailable, "already been used or withdrawn", services.ctx.currencies):
        await services.deals.accept_invitation(taker, created.invitation.code)


async def test_expired_and_forged_links(services):
    seller = await services.user("exp_seller")
    created = await invite(services, seller, None)
    async with services.ctx.db.engine.begin() as conn:
        await conn.execute(text("UPDATE invitations SET expires_at = now() - interval '1 second'"))
    taker = await services.user("exp_taker")
    before = await world(services.ctx.db)
    with refuses(InvitationUnavailable, "expired", services.ctx.currencies):
        await services.deals.accept_invitation(taker, created.invitation.code)
    with refuses(InvitationUnavailable, "not valid", services.ctx.currencies):
        code = created.invitation.code
        forged = code[:-1] + ("y" if code.endswith("x") else "x")  # never the real code
        await services.deals.accept_invitation(taker, forged)
    assert await world(services.ctx.db) == before


# -- who an invitation is for, found without its link -----------------------------------


async def waiting_for(services: Services, user, username: str | None) -> list[str]:
    """The codes of the deals in `user`'s waiting list through an invitation."""
    page = await ReadService(services.ctx).deals_page(user, "action", username=username)
    return [item.code for item in page.items if item.invitation is not None]


async def test_registration_counts_the_invitations_waiting_and_claims_a_name_s(services, sql):
    seller = await services.user("sally_seller")
    by_name = await invite(services, seller, "@New_Nina")
    by_id = await invite(services, seller, 8801)
    await invite(services, seller, "@someone_else")
    await invite(services, seller, None)  # an open link is nobody's in particular

    sql.start()
    nina = (
        await services.users.register(
            Profile(telegram_id=8801, first_name="Nina", username="new_nina")
        )
    ).value
    # the name let go by any earlier holder, the upsert, wallets, the claim and count
    assert len(sql.stop()) == 4
    assert nina.invited == 2
    assert await waiting_for(services, nina, "new_nina") == [by_id.deal.code, by_name.deal.code]
    # told once: an unchanged profile neither claims nor counts again
    again = (
        await services.users.register(
            Profile(telegram_id=8801, first_name="Nina", username="new_nina")
        )
    ).value
    assert again.invited == 0


async def test_someone_without_a_username_is_counted_by_id(services, sql):
    seller = await services.user("sam_seller")
    await invite(services, seller, 8802)
    sql.start()
    olaf = (await services.users.register(Profile(telegram_id=8802, first_name="Olaf"))).value
    assert len(sql.stop()) == 3  # the upsert, wallets, the count
    assert olaf.invited == 1


async def test_a_claimed_invitation_is_not_a_later_holder_of_the_name_s(services):
    seller = await services.user("sid_seller")
    created = await invite(services, seller, "@moving_name")
    first = await services.user("moving_name", telegram_id=8803)
    assert first.invited == 1
    # the first holder renames; someone else takes the name
    await services.users.register(Profile(telegram_id=8803, first_name="F", username="renamed"))
    later = await services.user("Moving_Name", telegram_id=8804)
    assert later.invited == 0
    assert await waiting_for(services, later, "Moving_Name") == []
    with refuses(InvitationUnavailable, "addressed to someone else", services.ctx.currencies):
        await services.deals.accept_invitation(later, created.invitation.code, "Moving_Name")
    # the claimer still finds it, renamed, and can take it up
    assert await waiting_for(services, first, "renamed") == [created.deal.code]
    joined = (await services.deals.accept_invitation(first, created.invitation.code)).value
    assert joined.buyer_id == first.id


async def test_an_unclaimed_name_s_invitation_is_its_holder_s_now(services):
    """A bare @username given to create while its holder is on the bot: the
    holder, who has not changed since, finds it by the name they hold."""
    seller = await services.user("stan_seller")
    holder = await services.user("Held_Name")
    created = await invite(services, seller, "@held_name")
    assert await waiting_for(services, holder, "Held_Name") == [created.deal.code]
    assert await waiting_for(services, holder, "other_name") == []
    # the creator never sees their own invitation as one waiting for them
    assert await waiting_for(services, seller, "stan_seller") == []
