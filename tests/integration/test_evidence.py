"""Dispute evidence on real Postgres: who may add what and when, its limits,
the admins told in the same statement, and a dispute's file as an admin reads
it (one statement)."""

from __future__ import annotations

import pytest

from bot.services.errors import InvalidInput, NotAllowed, NotFound, WrongState
from bot.services.settings import EscrowSettings
from db.models import EvidenceKind
from tests.conftest import ADMIN_TELEGRAM_ID
from tests.integration.helpers import world
from tests.refusals import refuses

SECOND_ADMIN = 900_000_002
PHOTO = "AgACAgIAAxkBAAIBZ2dispute-photo-file-id"


@pytest.fixture
def escrow_settings() -> EscrowSettings:
    return EscrowSettings(
        admins=(ADMIN_TELEGRAM_ID, SECOND_ADMIN), evidence_per_party=3, evidence_text_max_length=50
    )


@pytest.fixture
async def dispute(services):
    admin = await services.admin()
    buyer = await services.user("alice_buyer", funds={"USDT": 500_00})
    seller = await services.user("bob_seller")
    stranger = await services.user("mallory_x")
    deal = (
        await services.deals.create(
            buyer, role="buyer", currency="USDT", amount=100_00, description="A lamp",
            counterparty=seller.telegram_id,
        )
    ).value.deal  # fmt: skip
    await services.deals.accept(seller, deal.code)
    await services.deals.fund(buyer, deal.code)
    deal = (await services.deals.dispute(buyer, deal.code, "It came broken")).value
    return deal, admin, buyer, seller, stranger


async def test_each_piece_is_kept_and_told_to_every_admin_in_one_statement(services, sql, dispute):
    deal, admin, buyer, seller, _ = dispute
    sql.start()
    photo = await services.deals.add_evidence(
        buyer, deal.code, EvidenceKind.PHOTO, file_id=PHOTO, file_size=120_000, text="The crack"
    )
    assert len(sql.stop()) == 2  # the deal locked, then the piece with its notices
    added = photo.value
    assert (added.sent, added.limit) == (1, 3)
    assert (added.evidence.kind, added.evidence.file_id, added.evidence.text) == (
        "photo",
        PHOTO,
        "The crack",
    )
    assert sorted(n.chat_id for n in photo.notices) == [ADMIN_TELEGRAM_ID, SECOND_ADMIN]
    assert {(n.kind, n.evidence_id, n.actor_id) for n in photo.notices} == {
        ("dispute_evidence", added.evidence.id, buyer.id)
    }
    await services.deals.add_evidence(
        seller, deal.code, EvidenceKind.DOCUMENT, file_id="BQACAgIAAxkBAAIBa2receipt-file-id",
        file_name="receipt.pdf", file_size=30_000,
    )  # fmt: skip
    await services.deals.add_evidence(seller, deal.code, EvidenceKind.TEXT, text="  Sent intact  ")

    sql.start()
    file = await services.deals.dispute_file(admin, deal.code)
    assert len(sql.stop()) == 1
    assert (file.opened_by, file.opened_by_name, file.reason) == (
        buyer.id,
        "@alice_buyer",
        "It came broken",
    )
    assert [(e.sender_id, e.kind, e.file_name, e.text) for e in file.evidence] == [
        (buyer.id, "photo", None, "The crack"),
        (seller.id, "document", "receipt.pdf", None),
        (seller.id, "text", None, "Sent intact"),
    ]
    assert file.deal.id == deal.id


async def test_what_is_refused_changes_nothing(services, sql, dispute):
    deal, admin, buyer, seller, stranger = dispute
    currencies = services.ctx.currencies
    for n in range(3):
        await services.deals.add_evidence(buyer, deal.code, EvidenceKind.TEXT, text=f"note {n}")
    before = await world(services.ctx.db)
    sql.start()
    with refuses(InvalidInput, "the most evidence one party may send: 3 items", currencies):
        await services.deals.add_evidence(buyer, deal.code, EvidenceKind.TEXT, text="one more")
    assert len(sql.stop()) == 2
    with refuses(InvalidInput, "text is too long: 51 characters, at most 50", currencies):
        await services.deals.add_evidence(seller, deal.code, EvidenceKind.TEXT, text="x" * 51)
    with refuses(InvalidInput, "text can't be empty", currencies):
        await services.deals.add_evidence(seller, deal.code, EvidenceKind.TEXT, text=" ")
    with refuses(InvalidInput, "too large: at most 20 MB", currencies):
        await services.deals.add_evidence(
            seller, deal.code, EvidenceKind.DOCUMENT, file_id=PHOTO, file_size=20 * 2**20 + 1
        )
    with refuses(InvalidInput, "a photo, a document or a text", currencies):
        await services.deals.add_evidence(seller, deal.code, EvidenceKind.PHOTO, file_id="")
    with refuses(NotFound, "No such deal", currencies):
        await services.deals.add_evidence(stranger, deal.code, EvidenceKind.TEXT, text="me too")
    with refuses(NotAllowed, "for admins only", currencies):
        await services.deals.dispute_file(seller, deal.code)
    async with services.ctx.db.engine.connect() as conn:
        assert (await conn.exec_driver_sql("SELECT count(*) FROM dispute_evidence")).scalar() == 3
    assert await world(services.ctx.db) == before

    # once settled, the dispute takes no more; its file still shows what was sent
    await services.deals.resolve(admin, deal.code, "refund")
    with refuses(WrongState, "evidence can be added only while its dispute is open", currencies):
        await services.deals.add_evidence(seller, deal.code, EvidenceKind.TEXT, text="late")
    file = await services.deals.dispute_file(admin, deal.code)
    assert (file.deal.status, len(file.evidence)) == ("refunded", 3)


async def test_a_deal_never_disputed_has_an_empty_file(services, dispute):
    _, admin, buyer, seller, _ = dispute
    other = (
        await services.deals.create(
            buyer, role="buyer", currency="USDT", amount=10_00, description="Pen",
            counterparty=seller.telegram_id,
        )
    ).value.deal  # fmt: skip
    file = await services.deals.dispute_file(admin, other.code)
    assert (file.opened_by, file.reason, file.evidence) == (None, None, ())
    with refuses(WrongState, "waiting to be accepted", services.ctx.currencies):
        await services.deals.add_evidence(buyer, other.code, EvidenceKind.TEXT, text="x")
    with pytest.raises(NotFound):
        await services.deals.dispute_file(admin, "NOPE2345")
