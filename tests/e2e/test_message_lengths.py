"""The longest messages the bot renders fit Telegram's 4,096 characters.

Everything user-given is at the longest the settings allow (descriptions,
dispute reasons, withdrawal destinations and notes), names at Telegram's
longest (a 64-character first name, no @username), amounts at the largest a
currency may be configured with (a 10-letter code, no decimals, 10^15 units,
a 49.99% fee), and every user-given character is one that HTML escaping
expands ("<" is sent as "&lt;" and counts as one). Each screen goes through
the Telegram double, which refuses a text over 4,096 characters (once parsed)
as Telegram does, so an overflow fails the step that sent it.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import msgspec
import pytest

from bot.config import Config
from bot.runtime.app import App, build_app
from bot.services.errors import InvalidInput
from bot.services.money import MAX_MINOR_UNITS, CurrencySettings
from bot.services.settings import (
    DESCRIPTION_MAX,
    DESTINATION_MAX,
    EVIDENCE_MAX,
    REASON_MAX,
    EscrowSettings,
)
from bot.sim import FakeTelegram, SimulatedUser
from bot.sim.content import MAX_TEXT_LENGTH
from bot.telegram.handlers.admin import QUEUE_PAGE
from bot.telegram.keyboards import WalletMenu
from cache.settings import RedisSettings
from db import Database
from db.models import EvidenceKind
from tests.conftest import ADMIN_TELEGRAM_ID
from tests.e2e.conftest import People, actor

# The longest configurable currency: code, no decimals (every digit whole and
# grouped), the largest amount and a fee with two decimals.
CODE = "ABCDEFGHIJ"
MOST = MAX_MINOR_UNITS
MOST_TEXT = f"{MOST:,} {CODE}"
# Telegram's longest first name; "<" is escaped to "&lt;" but shows as one character.
LONGEST_NAME = "<" * 64


@pytest.fixture
async def app(
    config: Config, pg_settings, database: Database, redis_url: str
) -> AsyncIterator[App]:
    currencies = dict(config.currencies)
    currencies[CODE] = CurrencySettings(
        decimals=0, min_amount="1", max_amount=str(MOST), fee_bps=4999
    )
    test_config = msgspec.structs.replace(
        config,
        database=pg_settings,
        redis=RedisSettings(url=redis_url),
        cache=msgspec.structs.replace(config.cache, key_prefix=f"len{secrets.token_hex(4)}"),
        escrow=EscrowSettings(
            admins=(ADMIN_TELEGRAM_ID,),
            description_max_length=DESCRIPTION_MAX,
            reason_max_length=REASON_MAX,
            withdrawal_destination_max_length=DESTINATION_MAX,
            deals_per_hour=0,  # a full page of each list, opened in seconds
            strangers_per_day=0,
            evidence_per_party=EVIDENCE_MAX,
            evidence_text_max_length=REASON_MAX,
        ),
        currencies=currencies,
    )
    app = await build_app(test_config, session=FakeTelegram(), engine=database.engine)
    yield app
    await app.aclose()


@pytest.fixture
def telegram(app: App) -> FakeTelegram:
    session = app.bot.session
    assert isinstance(session, FakeTelegram)
    return session


@pytest.fixture
def people(app: App, telegram: FakeTelegram) -> People:
    return People(app, telegram)


@pytest.fixture
async def admin(people: People) -> SimulatedUser:
    admin = people("A" * 64, user_id=ADMIN_TELEGRAM_ID)
    await admin.start()
    return admin


async def longest_named(people: People) -> SimulatedUser:
    user = people(LONGEST_NAME)
    await user.start()
    return user


class Screens:
    """Every text the bot sent or edited so far: none refused, each within the limit."""

    def __init__(self, telegram: FakeTelegram) -> None:
        self.telegram = telegram

    def longest(self) -> int:
        refused = [(r.method, r.error) for r in self.telegram.requests if r.error is not None]
        assert refused == []
        lengths = [
            len(r.message.text)
            for r in self.telegram.requests
            if r.message is not None and r.method in ("sendMessage", "editMessageText")
        ]
        assert lengths and max(lengths) <= MAX_TEXT_LENGTH
        return max(lengths)


async def test_the_longest_deal_and_dispute_screens_fit(
    app: App, telegram: FakeTelegram, people: People, admin: SimulatedUser
) -> None:
    alice, bob = await longest_named(people), await longest_named(people)
    await app.services.wallets.credit_deposit(await actor(app, alice), CODE, MOST, reference="most")
    description, reason = "<" * DESCRIPTION_MAX, "<" * REASON_MAX

    # the wizard's summary, then the card, and Bob's invitation
    await alice.send("/new")
    await alice.press("I'm buying")
    await alice.send(str(bob.id))
    await alice.press(CODE)
    await alice.send(str(MOST))
    await alice.send(description)
    assert f"Amount: {MOST_TEXT}" in alice.last.text and description in alice.last.text
    await alice.press("✅ Create deal")
    assert bob.last.text.startswith(f"📨 {LONGEST_NAME} opened a deal with you")

    await bob.press("✅ Accept")
    await alice.press(f"💰 Fund {MOST_TEXT}")
    await bob.press("📦 Mark as delivered")
    await bob.press("⚠️ Open a dispute")
    await bob.send(reason)
    # the other party's card and the admins' notification carry the reason and the description
    for told in (alice, admin):
        assert f"Reason: {reason}" in told.last.text and description in told.last.text
    assert admin.last.text.startswith(f"🛡 New dispute opened by {LONGEST_NAME} (the seller).")

    # a full page of open disputes, the admin's card, the question before
    # settling and the settled card
    for number in range(QUEUE_PAGE):
        await app.services.wallets.credit_deposit(
            await actor(app, alice), CODE, MOST, reference=f"more-{number}"
        )
        created = await app.services.deals.create(
            await actor(app, alice),
            role="buyer",
            currency=CODE,
            amount=MOST,
            description=description,
            counterparty=bob.id,
        )
        code = created.value.deal.code
        await app.services.deals.accept(await actor(app, bob), code)
        await app.services.deals.fund(await actor(app, alice), code)
        await app.services.deals.dispute(await actor(app, alice), code, reason)
    await admin.send("/admin")
    await admin.press("⚠️ Open disputes")
    assert f"Open disputes (oldest {QUEUE_PAGE} shown)" in admin.last.text
    await admin.press(admin.buttons()[0])  # the first dispute, opened through the bot
    assert "in dispute" in admin.last.text and description in admin.last.text
    await admin.press("✅ Release to seller")
    assert admin.last.text.startswith(f"❓ Release {(MOST - MOST * 4999 // 10_000):,} {CODE}")
    await admin.press("✅ Yes, release to the seller")
    assert admin.last.text.startswith("✅ Released to the seller.")
    assert alice.last.text.startswith("🛡 An admin settled the dispute")

    # a full page of deals with the longest counterparty names and amounts
    for _ in range(10):
        await app.services.deals.create(
            await actor(app, alice),
            role="buyer",
            currency=CODE,
            amount=MOST,
            description=description,
            counterparty=bob.id,
        )
    await alice.send("/deals")
    assert (
        alice.last.text.count(
            f"{MOST_TEXT} · waiting for the seller to accept · with {LONGEST_NAME}"
        )
        == 10
    )
    print(f"\nlongest deal screen: {Screens(telegram).longest()} characters")


async def test_the_longest_withdrawal_screens_fit(
    app: App, telegram: FakeTelegram, people: People, admin: SimulatedUser
) -> None:
    alice = await longest_named(people)
    await app.services.wallets.credit_deposit(await actor(app, alice), CODE, MOST, reference="most")
    destination, note = "<" * DESTINATION_MAX, "<" * REASON_MAX

    # the form's confirmation and what the user reads after confirming
    await alice.send("/wallet")
    await alice.press("➖ Withdraw")
    await alice.press(callback_data=WalletMenu(screen="withdraw", currency=CODE).pack())
    await alice.send("1")
    await alice.send(destination)
    assert destination in alice.last.text
    await alice.press("✅ Confirm withdrawal")
    assert alice.last.text.startswith("✅ Withdrawal #1 requested: 1 ABCDEFGHIJ to <<<")
    # the admins' notification shows the destination whole, with its decisions
    assert destination in admin.last.text
    assert admin.buttons() == ["✅ Approve", "✖️ Reject", "🛡 Admin"]
    for _ in range(QUEUE_PAGE + 1):  # more are pending than one screen shows
        await app.services.wallets.request_withdrawal(
            await actor(app, alice), CODE, MOST // 100, destination
        )

    # the admins' queue, the approval's question, and the owner's notification
    await admin.send("/admin")
    await admin.press("🏦 Pending withdrawals")
    assert admin.buttons().count("✅ Approve #1") == 1
    assert len([b for b in admin.buttons() if b.startswith("✖️ Reject #")]) == QUEUE_PAGE
    await admin.press("✅ Approve #1")
    assert destination in admin.last.text  # in full before the admin says it was sent
    await admin.press("✅ Yes, it was sent")
    assert alice.last.text.startswith("✅ Your withdrawal #1 of 1 ABCDEFGHIJ to <<<")

    # rejections with the longest notes, then the owner's list of recent withdrawals
    # (the newest five: #12 still pending, #11 to #8 rejected)
    for withdrawal in (8, 9, 10, 11):
        await admin.press(f"✖️ Reject #{withdrawal}")
        await admin.send(note)
        assert admin.last.text.startswith(f"✖️ Withdrawal #{withdrawal} rejected")
        assert alice.last.text.startswith(f"✖️ Your withdrawal #{withdrawal} of ")
        assert note in alice.last.text
    await alice.press("🧾 My withdrawals")
    assert alice.last.text.startswith("🧾 Your recent withdrawals")
    assert alice.last.text.count("✖️ rejected") == 4
    print(f"\nlongest withdrawal screen: {Screens(telegram).longest()} characters")


async def test_the_longest_dispute_file_evidence_split_and_block_screens_fit(
    app: App, telegram: FakeTelegram, people: People, admin: SimulatedUser
) -> None:
    alice, bob = await longest_named(people), await longest_named(people)
    await app.services.wallets.credit_deposit(await actor(app, alice), CODE, MOST, reference="most")
    description, reason, said = "<" * DESCRIPTION_MAX, "<" * REASON_MAX, "<" * REASON_MAX
    buyer = await actor(app, alice)
    created = await app.services.deals.create(
        buyer, role="buyer", currency=CODE, amount=MOST, description=description,
        counterparty=bob.id,
    )  # fmt: skip
    code = created.value.deal.code
    await app.services.deals.accept(await actor(app, bob), code)
    await app.services.deals.fund(buyer, code)
    await app.services.deals.dispute(buyer, code, reason)

    # each kind of evidence through the bot, relayed to the admin at its longest
    await alice.send(f"/deal {code}")
    await alice.press("📎 Add evidence")
    await alice.send_photo("<" * 700)  # a caption that fits under the relay's header
    assert admin.last.media is not None and admin.last.media[0] == "photo"
    await alice.send_document("<" * 200 + ".pdf", said)  # one that doesn't: then a message
    assert admin.messages[-2].media is not None and admin.messages[-2].media[0] == "document"
    assert said in admin.last.text
    await alice.send(said)
    assert said in admin.last.text
    # ... and as many pieces as a party may send, from each
    for party in (alice, bob):
        sender = await actor(app, party)
        while True:
            try:
                await app.services.deals.add_evidence(sender, code, EvidenceKind.TEXT, text=said)
            except InvalidInput:
                break

    await admin.send("/admin")
    await admin.press("⚠️ Open disputes")
    await admin.press(admin.buttons()[0])
    assert f"📎 Evidence ({2 * EVIDENCE_MAX}):" in admin.last.text
    await admin.press("📎 Send all again")
    assert sum(1 for m in admin.messages if m.media is not None) == 2 + 2

    # a split of the largest amount, and both parties' amounts
    file = next(m for m in reversed(admin.messages) if "✂️ Split" in m.buttons)
    await admin.press("✂️ Split", message=file)
    await admin.send(f"{MOST // 3}")
    await admin.press("✅ Yes, split it")
    assert admin.last.text.startswith("✂️ Settled by a split.")
    assert alice.last.text.startswith("🛡 An admin split the payment")
    assert bob.last.text.startswith("🛡 An admin split the payment")

    # a block with the longest reason: the admin's screen and what the user reads
    await admin.send(f"/block {alice.id} {reason}")
    assert admin.last.text.startswith("🚫 ") and reason in admin.last.text
    assert alice.last.text.startswith("🚫 Your account was blocked") and reason in alice.last.text
    print(f"\nlongest dispute screen: {Screens(telegram).longest()} characters")
