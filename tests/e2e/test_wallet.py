"""The wallet through the real Dispatcher and the Telegram double: balances,
demo deposits, withdrawal requests with bad input, their approval or
rejection by the admin, double presses, and the cost of a read-only press."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterable

import pytest
from aiogram.types import Message, Update
from redis.asyncio.connection import Connection
from sqlalchemy import text

from bot.runtime.app import App, build_app
from bot.sim import FakeTelegram, SimulatedUser
from bot.sim.chats import ChatMessage
from bot.sim.users import UpdateResult
from bot.telegram.keyboards import WalletMenu
from tests.e2e.conftest import actor, balance


async def withdrawals(app: App, user: SimulatedUser) -> list[tuple[int, str]]:
    async with app.database.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT w.amount, w.status FROM withdrawals w JOIN users u ON u.id = w.user_id"
                " WHERE u.telegram_id = :t ORDER BY w.id"
            ),
            {"t": user.id},
        )
        return [(row.amount, row.status) for row in rows]


def typed(user: SimulatedUser, words: str) -> Update:
    """A message from `user`, built but not sent, so it can be delivered twice."""
    chat = user.chat
    chat.started = True
    message = Message(
        message_id=chat.next_message_id(),
        date=user.telegram.now(),
        chat=chat.chat,
        from_user=user.user,
        text=words,
    ).as_(user.bot)
    chat.user_messages[message.message_id] = message
    return Update(update_id=user.telegram.next_update_id(), message=message).as_(user.bot)


@pytest.fixture
async def alice(app: App, people) -> SimulatedUser:
    alice = people("Alice", "alice_w")
    await alice.start()
    return alice


async def fund(app: App, user: SimulatedUser, amount: int, currency: str = "USDT") -> None:
    await app.services.wallets.credit_deposit(
        await actor(app, user), currency, amount, reference=f"seed-{user.id}-{amount}"
    )


# -- two replicas ----------------------------------------------------------------------


@pytest.fixture
async def replica(app: App, telegram: FakeTelegram) -> AsyncIterator[App]:
    """A second bot replica on the same Postgres, Redis (FSM included) and Telegram.
    Like webhook replicas, neither keeps a copy of a form (bot/telegram/owned_forms.py:
    only a process that gets every update does); unlike them, no user's lock."""
    other = await build_app(app.config, session=telegram, engine=app.database.engine)
    for node in (app, other):
        node.dispatcher.fsm.storage.owned = None
    yield other
    await other.aclose()


def on(replica: App, user: SimulatedUser) -> SimulatedUser:
    """The same Telegram user, as the other replica gets their updates."""
    return SimulatedUser(
        user.telegram,
        replica.bot,
        replica.dispatcher,
        user_id=user.id,
        first_name=user.user.first_name,
        username=user.user.username,
    )


def side_by_side(monkeypatch, apps: tuple[App, ...], method: str) -> list[dict]:
    """Make `services.wallets.<method>` of every app wait until all of them were
    called: both updates got past their forms, as on replicas racing. Returns
    the keyword arguments of the calls."""
    calls: list[dict] = []
    all_in = asyncio.Event()
    for node in apps:
        original = getattr(node.services.wallets, method)

        async def gated(*args, _original=original, **kwargs):
            calls.append(kwargs)
            if len(calls) == len(apps):
                all_in.set()
            await asyncio.wait_for(all_in.wait(), 5)
            return await _original(*args, **kwargs)

        monkeypatch.setattr(node.services.wallets, method, gated)
    return calls


# -- balances and deposits -----------------------------------------------------------


async def test_balances_after_a_demo_deposit(app, alice):
    await alice.send("/wallet")
    assert "USDT: 0.00 USDT available · 0.00 USDT held" in alice.last.text
    assert alice.buttons() == ["➕ Deposit", "➖ Withdraw", "🧾 Withdrawals", "« Menu"]

    await alice.press("➕ Deposit")
    assert alice.buttons() == ["USDT", "BTC", "TON", "« Wallet"]
    await alice.press("USDT")
    assert "Demo mode" in alice.last.text
    assert "from 1.00 USDT to 1,000,000.00 USDT" in alice.last.text

    for bad, told in [
        ("lots", "Send the amount as a number"),
        ("12.345", "at most 2 decimal places"),
        ("0.50", "The minimum is 1.00 USDT."),
        ("-5", "must be positive"),
    ]:
        await alice.send(bad)
        assert told in alice.last.text and "Send the amount again" in alice.last.text, bad
    assert await balance(app, alice) == (0, 0)

    await alice.send("1,250.50")
    assert alice.last.text.startswith("✅ Deposited 1,250.50 USDT.")
    assert "USDT: 1,250.50 USDT available · 0.00 USDT held" in alice.last.text
    assert await balance(app, alice) == (1_250_50, 0)

    # the form is over: the same text again is not a deposit
    await alice.send("10")
    assert await balance(app, alice) == (1_250_50, 0)
    # the menu and the wallet button show the new balance too
    await alice.send("/start")
    assert "Balance: 1,250.50 USDT" in alice.last.text
    await alice.press("👛 Wallet")
    assert "USDT: 1,250.50 USDT available" in alice.last.text


async def test_a_deposit_message_delivered_twice_is_credited_once(app, replica, alice, monkeypatch):
    await alice.send("/wallet")
    await alice.press("➕ Deposit")
    await alice.press("TON")
    update = typed(alice, "2.5")
    # the same message reaches both replicas, and both get as far as crediting it
    calls = side_by_side(monkeypatch, (app, replica), "credit_deposit")
    again = Update(
        update_id=alice.telegram.next_update_id(),
        message=update.message.model_copy().as_(replica.bot),
    ).as_(replica.bot)
    results = await asyncio.gather(alice.feed(update), on(replica, alice).feed(again))
    # the form's id: both deliveries of the message read the same form
    first, second = (call["reference"] for call in calls)
    assert first == second and first.startswith(f"demo:{alice.id}:")
    assert await balance(app, alice, "TON") == (2_500_000_000, 0)
    told = sorted(t.split("\n")[0] for t in said(results))
    assert told == ["This deposit was already credited; nothing changed.", "✅ Deposited 2.50 TON."]
    async with app.database.engine.connect() as conn:
        deposits = await conn.scalar(
            text("SELECT count(*) FROM ledger_entries WHERE kind = 'deposit' AND amount > 0")
        )
    assert deposits == 1


async def test_a_read_only_wallet_press_runs_no_sql_and_no_redis(app, alice, sql, monkeypatch):
    await fund(app, alice, 42_00)
    await alice.send("/start")  # the snapshot is in L1 now
    redis_commands: list[bytes] = []
    original = Connection.send_packed_command

    async def counted(self, command, check_health=True):
        packed = command if isinstance(command, (bytes, bytearray)) else b"".join(command)
        name = packed.split(b"\r\n")[2].upper() if packed.startswith(b"*") else b"?"
        if name not in (b"PING", b"SUBSCRIBE"):  # the invalidation listener's own traffic
            redis_commands.append(name)
        return await original(self, command, check_health)

    monkeypatch.setattr(Connection, "send_packed_command", counted)
    sql.start()
    result = await alice.press("👛 Wallet")
    assert sql.stop() == []
    assert redis_commands == []
    assert result.methods == ["answerCallbackQuery", "editMessageText"]
    assert "USDT: 42.00 USDT available · 0.00 USDT held" in alice.last.text
    assert "BTC: 0.00 BTC available" in alice.last.text


# -- withdrawals ---------------------------------------------------------------------


async def request(user: SimulatedUser, amount: str, destination: str) -> None:
    await user.press("✅ Confirm withdrawal", message=await confirmation(user, amount, destination))


async def test_a_withdrawal_with_bad_input_then_approved(app, alice, people):
    admin = people.admin()
    await admin.start()
    await fund(app, alice, 100_00)
    await alice.send("/wallet")
    await alice.press("➖ Withdraw")
    assert alice.buttons()[:3] == ["USDT · 100.00 USDT", "BTC · 0.00 BTC", "TON · 0.00 TON"]
    await alice.press("BTC · 0.00 BTC")
    assert "You have 0.00 BTC available" in alice.last.text
    await alice.press("« Wallet")
    await alice.press("➖ Withdraw")
    await alice.press("USDT · 100.00 USDT")
    assert "Available: 100.00 USDT" in alice.last.text

    for bad, told in [
        ("a lot", "Send the amount as a number"),
        ("10.001", "at most 2 decimal places"),
        ("0.99", "The minimum is 1.00 USDT."),
        ("100.01", "You have only 100.00 USDT available."),
    ]:
        await alice.send(bad)
        assert told in alice.last.text, bad
    await alice.send("40")
    assert "Where should 40.00 USDT be sent?" in alice.last.text
    await alice.send("T" * 201)
    assert "too long: 201 characters, at most 200" in alice.last.text
    await alice.send("TXyz <main> & co")
    assert alice.last.text.startswith("❓ Withdraw 40.00 USDT to TXyz <main> & co?")
    assert await balance(app, alice) == (100_00, 0)  # nothing moves before the confirmation

    await alice.press("✅ Confirm withdrawal")
    assert alice.last.text.startswith("✅ Withdrawal #1 requested: 40.00 USDT to TXyz <main> & co.")
    assert "Status: ⏳ pending" in alice.last.text
    assert "USDT: 60.00 USDT available · 40.00 USDT held" in alice.last.text
    assert await balance(app, alice) == (60_00, 40_00)
    assert admin.last.text.startswith("🛡 New withdrawal request #1 from @alice_w")

    await alice.press("🧾 Withdrawals")
    assert "#1 · 40.00 USDT → TXyz <main> & co" in alice.last.text
    assert "⏳ pending" in alice.last.text

    await admin.press("🛡 Admin")
    await admin.press("🏦 Pending withdrawals")
    assert "#1 · 40.00 USDT · user " + str(alice.id) in admin.last.text
    await admin.press("✅ Approve #1")
    assert admin.last.text.startswith("❓ Approve withdrawal #1?")
    assert await balance(app, alice) == (60_00, 40_00)
    await admin.press("✅ Yes, it was sent")
    assert admin.last.text.startswith("✅ Withdrawal #1 approved: 40.00 USDT.")
    assert "Nothing to decide." in admin.last.text
    assert await balance(app, alice) == (60_00, 0)
    assert alice.last.text.startswith("✅ Your withdrawal #1 of 40.00 USDT to TXyz <main> & co")
    await alice.press("👛 Wallet")
    assert "USDT: 60.00 USDT available · 0.00 USDT held" in alice.last.text
    await alice.press("🧾 Withdrawals")
    assert "✅ sent" in alice.last.text


async def test_a_withdrawal_rejected_with_a_reason(app, alice, people):
    admin = people.admin()
    await admin.start()
    await fund(app, alice, 100_00)
    await request(alice, "25", "wallet-1")
    assert await balance(app, alice) == (75_00, 25_00)

    await admin.send("/admin")
    await admin.press("🏦 Pending withdrawals")
    pending = admin.last
    await admin.press("✖️ Reject #1")
    assert "Why is withdrawal #1 rejected?" in admin.last.text
    await admin.send("x" * 501)
    assert "too long" in admin.last.text  # the step repeats
    assert await withdrawals(app, alice) == [(25_00, "pending")]
    await admin.send("Wrong <network>")
    assert admin.last.text.startswith("✖️ Withdrawal #1 rejected: 25.00 USDT is back")
    assert await balance(app, alice) == (100_00, 0)
    assert await withdrawals(app, alice) == [(25_00, "rejected")]
    assert alice.last.text.startswith("✖️ Your withdrawal #1 of 25.00 USDT was rejected:")
    assert "Wrong <network>" in alice.last.text
    await alice.press("🧾 My withdrawals")
    assert "✖️ rejected" in alice.last.text and "Wrong <network>" in alice.last.text

    # a slow client still shows the list: the decision is made already
    result = await admin.press("✅ Approve #1", message=pending)
    assert result.texts[-1].startswith("⚠️ Withdrawal #1 is not pending any more: it is rejected.")
    assert await balance(app, alice) == (100_00, 0)


def said(results: Iterable[UpdateResult]) -> list[str]:
    """What the bot wrote in answer to these updates (not the buttons it took
    off a finished form's messages)."""
    return [
        request.message.text
        for result in results
        for request in result.requests
        if request.method in ("sendMessage", "editMessageText")
        and request.message is not None
        and request.error is None
    ]


async def confirmation(user: SimulatedUser, amount: str, destination: str) -> ChatMessage:
    await user.send("/wallet")
    await user.press("➖ Withdraw")
    await user.press(callback_data=WalletMenu(screen="withdraw", currency="USDT").pack())
    await user.send(amount)
    await user.send(destination)
    return user.last


def shown(results: Iterable[UpdateResult]) -> list[str]:
    """What the bot showed in answer to these updates: what it sent or edited,
    and the edits Telegram found already shown ("message is not modified")."""
    return [
        request.params["text"]
        for result in results
        for request in result.requests
        if request.method in ("sendMessage", "editMessageText")
        and (request.error is None or "message is not modified" in str(request.error))
    ]


async def holds(app: App, user: SimulatedUser) -> int:
    """The hold movements of `user`'s withdrawals in the ledger."""
    async with app.database.engine.connect() as conn:
        return await conn.scalar(
            text(
                "SELECT count(*) FROM ledger_entries l JOIN users u ON u.id = l.user_id"
                " WHERE u.telegram_id = :t AND l.kind = 'hold' AND l.account = 'held'"
            ),
            {"t": user.id},
        )


async def test_confirm_pressed_twice_requests_once_and_shows_it_twice(app, alice):
    await fund(app, alice, 100_00)
    confirm = await confirmation(alice, "30", "acct-7")
    first = await alice.press("✅ Confirm withdrawal")
    # what a slow client still shows, or the press delivered again after its commit
    again = await alice.press("✅ Confirm withdrawal", message=confirm)

    assert await balance(app, alice) == (70_00, 30_00)
    assert await withdrawals(app, alice) == [(30_00, "pending")]
    assert await holds(app, alice) == 1
    for result in (first, again):
        (said,) = shown([result])
        assert said.startswith("✅ Withdrawal #1 requested: 30.00 USDT to <code>acct-7</code>.")
        assert "Status: ⏳ pending" in said
    assert not any("⚠️" in text for text in said_in((first, again)))
    assert alice.chat.messages[confirm.message_id].text.startswith("✅ Withdrawal #1 requested")


def said_in(results: Iterable[UpdateResult]) -> list[str]:
    return [text for result in results for text in result.texts]


async def test_two_presses_of_confirm_at_once_hold_once(app, alice):
    await fund(app, alice, 100_00)
    confirm = await confirmation(alice, "30", "acct-7")
    results = await asyncio.gather(
        alice.press("✅ Confirm withdrawal", message=confirm),
        alice.press("✅ Confirm withdrawal", message=confirm),
    )
    assert await balance(app, alice) == (70_00, 30_00)
    assert await withdrawals(app, alice) == [(30_00, "pending")]
    assert await holds(app, alice) == 1
    # one user's updates run one after the other on a replica: the second
    # press finds the form done, and is shown the withdrawal it requested
    told = [t.split("\n")[0] for t in shown(results)]
    assert told == ["✅ Withdrawal #1 requested: 30.00 USDT to <code>acct-7</code>."] * 2
    assert not any("⚠️" in text for text in said_in(results))


async def test_two_replicas_confirming_at_once_hold_once(app, replica, alice, monkeypatch):
    await fund(app, alice, 100_00)
    confirm = await confirmation(alice, "30", "acct-7")
    # Both presses get past the form: only the service, with the confirmation
    # message as the request's identity, can stop the second.
    calls = side_by_side(monkeypatch, (app, replica), "request_withdrawal")
    results = await asyncio.gather(
        alice.press("✅ Confirm withdrawal", message=confirm),
        on(replica, alice).press("✅ Confirm withdrawal", message=confirm),
    )
    assert [call["reference"] for call in calls] == [f"{alice.id}:{confirm.message_id}"] * 2
    assert await balance(app, alice) == (70_00, 30_00)
    assert await withdrawals(app, alice) == [(30_00, "pending")]
    assert await holds(app, alice) == 1
    # the loser's insert used up a withdrawal id before it rolled back: both
    # show the one the winner made
    [number] = {re.search(r"#(\d+)", line).group(1) for line in shown(results)}
    told = [t.split("\n")[0] for t in shown(results)]
    assert told == [f"✅ Withdrawal #{number} requested: 30.00 USDT to <code>acct-7</code>."] * 2
    assert not any("⚠️" in text for text in said_in(results))


async def test_leaving_a_withdrawal_changes_nothing(app, alice):
    await fund(app, alice, 100_00)
    await alice.send("/wallet")
    await alice.press("➖ Withdraw")
    await alice.press("USDT · 100.00 USDT")
    await alice.send("30")
    await alice.press("✖️ Cancel")
    assert alice.last.text.startswith("Cancelled. Nothing was changed.")
    await alice.send("somewhere")  # not taken for a destination any more
    assert "didn't understand" in alice.last.text

    await alice.send("/wallet")
    await alice.press("➖ Withdraw")
    await alice.press("USDT · 100.00 USDT")
    await alice.send("30")
    await alice.send("acct-7")
    await alice.send("/cancel")
    assert alice.last.text == "Cancelled. Nothing was changed."
    # the confirmation, pressed after all, has nothing left to confirm
    await alice.press("✅ Confirm withdrawal")
    assert "no withdrawal waiting for confirmation" in alice.last.text
    assert await balance(app, alice) == (100_00, 0)
    assert await withdrawals(app, alice) == []
