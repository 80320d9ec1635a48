"""A whole deal as two people live it, only through what Telegram shows them;
and the bot-wide promises: async filters and handlers only, the command menu,
list pages, and a polite answer to the unexpected; on one Redis and on a
Redis Cluster."""

from __future__ import annotations

import logging

from aiogram.dispatcher.event.handler import CallableObject
from aiogram.dispatcher.router import Router

from bot.sim import SimulatedUser
from bot.telegram.texts import COMMANDS
from tests.conftest import READS_FROM
from tests.e2e.conftest import ON_ONE_REDIS_AND_A_CLUSTER

# on one Redis and on a Redis Cluster (the session's own), deal cards and lists
# also with a hot standby serving them
pytestmark = [ON_ONE_REDIS_AND_A_CLUSTER, READS_FROM]


async def deposit(user: SimulatedUser, amount: str) -> None:
    await user.send("/wallet")
    await user.press("➕ Deposit")
    await user.press("USDT")
    await user.send(amount)
    assert user.last.text.startswith(f"✅ Deposited {amount} USDT.")


async def new_deal(user: SimulatedUser, counterparty: str | None, amount: str) -> None:
    await user.send("/new")
    await user.press("I'm buying")
    if counterparty is None:
        await user.press("🔗 Invite by link")
    else:
        await user.send(counterparty)
    await user.press("USDT")
    await user.send(amount)
    await user.send("Road bike, 56 cm frame")
    await user.press("✅ Create deal")


async def test_a_deal_by_username_and_one_by_link_from_first_press_to_payout(app, people):
    alice, bob, carol = people("Alice", "alice_j"), people("Bob", "bob_j"), people("Carol")
    for user in (alice, bob, carol):
        await user.send("/start")
    await deposit(alice, "1,000.00")

    # by @username
    await new_deal(alice, "@bob_j", "400.00")
    await bob.press("✅ Accept")
    await alice.press("💰 Fund 400.00 USDT")
    await bob.press("📦 Mark as delivered")
    await alice.press("✅ Release payment")
    await alice.press("✅ Yes, release the payment")
    assert "released to the seller" in alice.last.text

    # by invitation link, to someone without a username
    await new_deal(alice, None, "100.00")
    link = next(m.text for m in reversed(alice.messages) if "t.me/" in m.text)
    payload = link.split("?start=")[1].split()[0]
    await carol.start(payload)
    await carol.press("✅ Accept the deal")
    await alice.press("💰 Fund 100.00 USDT")
    await carol.press("📦 Mark as delivered")
    await alice.press("✅ Release payment")
    await alice.press("✅ Yes, release the payment")

    for user, shown in [
        (alice, "USDT: 500.00 USDT available · 0.00 USDT held"),
        (bob, "USDT: 394.00 USDT available · 0.00 USDT held"),  # 400 less the 1.5% fee
        (carol, "USDT: 98.50 USDT available · 0.00 USDT held"),
    ]:
        await user.send("/wallet")
        assert shown in user.last.text, user
    admin = people.admin()
    await admin.send("/start")
    stats = (await app.services.reads.stats(await app.cache.cache.get(admin.id))).released
    assert [(v.currency, v.deals, v.volume, v.fees) for v in stats] == [("USDT", 2, 500_00, 7_50)]


def handlers(router: Router):
    yield from (h for observer in router.observers.values() for h in observer.handlers)
    for child in router.sub_routers:
        yield from handlers(child)


def router_filters(router: Router):
    """The filters set once on a router's observers (its admin check, say)."""
    for observer in router.observers.values():
        yield from (f for f in observer._handler.filters or () if isinstance(f, CallableObject))
    for child in router.sub_routers:
        yield from router_filters(child)


async def test_no_handler_or_filter_runs_in_a_thread(app):
    """aiogram runs sync callables in an executor: +65-90 µs on every update."""
    sync = [
        f"{handler.callback.__qualname__}: {getattr(c, 'callback', c)}"
        for handler in handlers(app.dispatcher)
        for c in [handler, *(handler.filters or ())]
        if isinstance(c, CallableObject) and not c.awaitable
    ]
    filters = list(router_filters(app.dispatcher))
    assert filters  # the admin routers' filter, at least
    sync += [str(f.callback) for f in filters if not f.awaitable]
    assert sync == []


async def test_the_command_menu_is_registered_with_telegram(app, telegram):
    await app.register_commands()
    # the default menu, then one per language (tests/e2e/test_language.py)
    request, *_ = telegram.calls("setMyCommands")
    assert [c.command for c in request.params["commands"]] == [name for name, _ in COMMANDS]
    assert {"start", "new", "deals", "wallet", "cancel", "help"} <= {name for name, _ in COMMANDS}


async def test_my_deals_pages_through_older_deals(app, people):
    alice, bob = people("Alice", "alice_p"), people("Bob", "bob_p")
    await alice.send("/start")
    await bob.send("/start")
    actor = await app.cache.cache.get(alice.id)
    codes = [
        (
            await app.services.deals.create(
                actor,
                role="buyer",
                currency="USDT",
                amount=10_00 + i,
                description=f"item {i}",
                counterparty=await app.services.users.find_by_username("bob_p"),
            )
        ).value.deal.code
        for i in range(13)
    ]
    await alice.send("/deals")
    first = alice.last.text
    assert first.count("#") == 10 and f"#{codes[-1]}" in first and f"#{codes[2]}" not in first
    await alice.press("Older »")
    older = alice.last.text
    assert [c for c in codes if f"#{c}" in older] == codes[:3][::-1] or set(
        c for c in codes if f"#{c}" in older
    ) == set(codes[:3])
    assert "Older »" not in alice.buttons()
    await alice.press("Waiting for me")
    assert "Nothing here yet." in alice.last.text  # Bob has to accept them, not Alice
    await bob.send("/deals")
    await bob.press("Waiting for me")
    assert bob.last.text.count("#") == 10


async def test_an_unexpected_error_gets_a_polite_reply_with_a_reference(
    app, people, monkeypatch, caplog
):
    async def broken(*args, **kwargs):
        raise RuntimeError("database on fire")

    monkeypatch.setattr(app.services.reads, "deals_page", broken)
    alice = people("Alice", "alice_err")
    await alice.send("/start")
    with caplog.at_level(logging.ERROR):
        await alice.send("/deals")
    assert "Something went wrong on our side" in alice.last.text
    # it can't know whether anything changed, so it says neither
    assert "nothing was changed" not in alice.last.text.lower()
    assert "check the deal or your wallet before you try again" in alice.last.text
    ref = alice.last.text.split("ref ")[1].rstrip(")")
    assert any(ref in record.getMessage() for record in caplog.records)
    assert "database on fire" not in alice.last.text


async def test_pressing_the_tab_already_shown_is_not_an_error(app, people):
    alice = people("Alice", "alice_tabs")
    await alice.send("/deals")
    shown = alice.last.text
    result = await alice.press("• Active")
    assert result.methods == ["answerCallbackQuery", "editMessageText"]
    assert alice.last.text == shown  # no "something went wrong" message


async def test_commands_are_read_in_any_case(app, people):
    # Phones capitalise the first letter; some people type in capitals.
    user = people("Dana", "dana_j")
    lower = {command: (await user.send(f"/{command}")).texts for command in COMMANDS_TYPED}
    for command, said in lower.items():
        for typed in (command.upper(), command.capitalize()):
            assert (await user.send(f"/{typed}")).texts == said, typed
    assert all(said for said in lower.values())
    assert not any("didn't understand" in text for said in lower.values() for text in said)


COMMANDS_TYPED = ("start", "menu", "help", "wallet", "deals", "cancel")
