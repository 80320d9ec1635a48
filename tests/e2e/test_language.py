"""Each user is spoken to in their own language: Russian for a Telegram set to
Russian, English otherwise, switched in the menu and kept on the user (their
snapshot carries it, so reading it costs nothing); notifications are said in
the recipient's language, amounts and dates written the way it writes them."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text

from bot.runtime.app import App, build_app
from bot.sim import FakeTelegram, SimulatedUser
from tests.e2e import test_deals
from tests.e2e.conftest import _ids, actor, balance
from tests.e2e.test_deals import forge, open_deal, press, show

timeline = test_deals.timeline  # SQL, Redis and Bot API calls in order

NBSP = "\u00a0"
# Three Latin words in a row: an English sentence (names, codes and currencies are one word).
ENGLISH = re.compile(r"[A-Za-z']{2,}(?:[ ,]+[A-Za-z']{2,}){2,}")


def speaker(
    app: App, telegram: FakeTelegram, first_name: str, username: str, language: str | None
) -> SimulatedUser:
    return SimulatedUser(
        telegram,
        app.bot,
        app.dispatcher,
        user_id=next(_ids),
        first_name=first_name,
        username=username,
        language_code=language,
    )


def elsewhere(replica: App, user: SimulatedUser) -> SimulatedUser:
    """The same Telegram user (the same Telegram language), on another replica."""
    return SimulatedUser(
        user.telegram,
        replica.bot,
        replica.dispatcher,
        user_id=user.id,
        first_name=user.user.first_name,
        username=user.user.username,
        language_code=user.user.language_code,
    )


async def stored_locale(app: App, user: SimulatedUser) -> str | None:
    async with app.database.engine.connect() as conn:
        return await conn.scalar(
            text("SELECT locale FROM users WHERE telegram_id = :t"), {"t": user.id}
        )


@pytest.fixture
def ivan(app: App, telegram: FakeTelegram) -> SimulatedUser:
    return speaker(app, telegram, "Иван", "ivan_ru", "ru-RU")


@pytest.fixture
async def replica(app: App, telegram: FakeTelegram) -> AsyncIterator[App]:
    other = await build_app(app.config, session=telegram, engine=app.database.engine)
    yield other
    await other.aclose()


# -- which language --------------------------------------------------------------------


async def test_a_telegram_set_to_russian_gets_the_russian_menu(app, ivan, people):
    await ivan.start()
    assert ivan.last.text.startswith("👋 Привет, Иван!")
    assert "Баланс: пусто" in ivan.last.text
    assert ivan.buttons() == [
        "➕ Новая сделка",
        "📋 Мои сделки",
        "👛 Кошелёк",
        "⭐ Мой профиль",
        "❓ Помощь",
        "🌐 Язык",
    ]
    await ivan.press("❓ Помощь")
    assert ivan.last.text.startswith("Как здесь работает эскроу")
    # not chosen: Telegram's language decides, and nothing is stored
    assert await stored_locale(app, ivan) is None
    # anyone else is spoken to in English
    for language in ("en", "de", None):
        other = speaker(app, people.telegram, "Otto", f"otto_{language}", language)
        await other.start()
        assert other.last.text.startswith("👋 Hi, Otto!"), language
        assert "🌐 Language" in other.buttons()


async def test_switching_to_english_changes_the_next_screens_and_is_kept(
    app, ivan, replica, telegram
):
    await ivan.start()
    await ivan.press("🌐 Язык")
    assert ivan.last.text == "🌐 Язык\n\nНа каком языке мне с вами говорить?"
    assert ivan.buttons() == ["English", "✓ Русский", "« Меню"]
    await ivan.press("English")
    assert ivan.last.text.startswith("✅ I'll speak English to you from now on.\n\n👋 Hi, Иван!")
    assert "🌐 Language" in ivan.buttons()
    assert await stored_locale(app, ivan) == "en"
    assert (await actor(app, ivan)).locale == "en"
    await ivan.send("/wallet")
    assert ivan.last.text.startswith("👛 Your wallet")

    # kept across a cache flush: read again from Postgres
    app.cache.cache.clear_local()
    await app.cache.cache.redis.flushdb()
    await ivan.send("/help")
    assert ivan.last.text.startswith("How escrow works here")

    # and on another replica, though Telegram still says Russian
    there = elsewhere(replica, ivan)
    await there.send("/start")
    assert there.last.text.startswith("👋 Hi, Иван!")

    # back to Russian, heard by the first replica through the invalidation
    await there.press("🌐 Language")
    await there.press("Русский")
    assert there.last.text.startswith("✅ Теперь я говорю с вами по-русски.\n\n👋 Привет, Иван!")
    await ivan.send("/start")
    assert ivan.last.text.startswith("👋 Привет, Иван!")
    assert await stored_locale(app, ivan) == "ru"


async def test_choosing_the_language_is_one_write_and_reading_it_costs_nothing(app, ivan, timeline):
    await ivan.start()  # L1 is warm now
    events = await press(timeline, ivan, "❓ Помощь")
    assert timeline.of("sql") == [] and timeline.of("redis") == [], events
    assert ivan.last.text.startswith("Как здесь работает эскроу")
    await ivan.press("« Меню")
    await ivan.press("🌐 Язык")
    await press(timeline, ivan, "English")
    sql = timeline.of("sql")
    assert sql == ["BEGIN", "UPDATE"], sql
    # the same language chosen again writes nothing new
    await ivan.press("🌐 Language")
    version = (await actor(app, ivan)).version
    await ivan.press("✓ English")
    assert (await actor(app, ivan)).version == version


async def test_a_forged_language_changes_nothing(app, ivan, telegram):
    await ivan.start()
    await ivan.feed(forge(ivan, telegram, "lang:xx"))
    assert ivan.last.text.startswith("🌐 Язык")
    assert await stored_locale(app, ivan) is None


async def test_a_press_alert_and_a_refusal_are_said_in_russian(app, ivan, telegram):
    """What is said before the handler runs (the press's answer) and by the
    error handler (a refusal) is in the user's language too."""
    await ivan.start()
    await ivan.feed(forge(ivan, telegram, "gone:1"))  # a button no handler takes any more
    assert ivan.last_answer is not None and ivan.last_answer.text == "Эта кнопка устарела."
    await ivan.send("/deal NOSUCHDEAL")
    assert ivan.last.text == "⚠️ Такой сделки нет."
    assert ivan.buttons() == ["📋 Мои сделки", "« Меню"]


# -- notifications in the recipient's language ------------------------------------------


async def test_a_russian_counterparty_is_told_in_russian_while_the_actor_reads_english(
    app, people, telegram
):
    alice = people("Alice", "alice_buys")
    boris = speaker(app, telegram, "Борис", "bob_sells", "ru")
    await alice.start()
    await boris.start()
    await app.services.wallets.credit_deposit(
        await actor(app, alice), "USDT", 500_00, reference="seed-alice"
    )
    deal = await open_deal(app, alice)  # Alice buys from @bob_sells
    await show(boris, deal)
    assert "Сделка #" in boris.last.text and "вы продавец" in boris.last.text
    assert "Сумма: 100,00 USDT" in boris.last.text
    await boris.press("✅ Принять")
    assert boris.last.text.startswith("✅ Вы приняли сделку.")
    assert alice.last.text.startswith("✅ @bob_sells accepted the deal.")
    assert "💰 Fund 100.00 USDT" in alice.buttons()

    result = await alice.press("💰 Fund 100.00 USDT")
    assert alice.last.text.startswith("🔒 Funded: the money is held in escrow.")
    told = [m for m in result.messages if m.text.startswith("🔒 @alice_buys:")]
    [message] = told
    assert message.text.startswith(
        "🔒 @alice_buys: сделка оплачена, деньги заблокированы в эскроу."
    )
    assert "Продавец получит: 98,50 USDT" in message.text
    assert "📦 Отметить как выполненную" in boris.buttons(message)
    await boris.press("📦 Отметить как выполненную", message=message)
    assert alice.last.text.startswith("📦 @bob_sells marked the deal as delivered.")


async def test_the_outbox_worker_says_it_in_the_recipients_language(app, people, telegram):
    alice = people("Alice", "alice_buys")
    boris = speaker(app, telegram, "Борис", "bob_sells", "ru")
    await alice.start()
    await boris.start()
    await open_deal(app, alice)  # the invitation waits in the outbox for the worker
    async with app.database.engine.begin() as conn:
        languages = (
            (
                await conn.execute(
                    text("SELECT language FROM notifications WHERE chat_id = :c"), {"c": boris.id}
                )
            )
            .scalars()
            .all()
        )
        await conn.execute(text("UPDATE notifications SET due_at = now()"))
    assert languages == ["ru"]
    assert await app.outbox.run_once() == 1
    assert boris.last.text.startswith(
        "📨 @alice_buys предлагает вам сделку, вы в ней продавец. Примите её, чтобы продолжить."
    )
    assert boris.buttons()[:2] == ["✅ Принять", "Отклонить"]


async def test_a_language_chosen_after_the_change_does_not_rewrite_what_was_said(app, people):
    """A notification is said in the language its recipient read when it was
    written; what is shown after a switch is in the new one."""
    alice, bob = people("Alice", "alice_buys"), people("Bob", "bob_sells")
    await alice.start()
    await bob.start()
    await bob.press("🌐 Language")
    await bob.press("Русский")
    await open_deal(app, alice)
    async with app.database.engine.connect() as conn:
        language = await conn.scalar(
            text("SELECT language FROM notifications WHERE chat_id = :c"), {"c": bob.id}
        )
    assert language == "ru"  # chosen, though his Telegram says English


# -- amounts, dates, commands ------------------------------------------------------------


async def test_amounts_and_dates_are_written_the_way_the_reader_writes_them(app, ivan, people):
    await ivan.start()
    await app.services.wallets.credit_deposit(
        await actor(app, ivan), "USDT", 1_234_56, reference="seed-ivan"
    )
    await ivan.send("/wallet")
    assert f"USDT: доступно 1{NBSP}234,56 USDT · заморожено 0,00 USDT" in ivan.last.text
    alice = people("Alice", "alice_buys")
    await alice.start()
    await app.services.wallets.credit_deposit(
        await actor(app, alice), "USDT", 1_234_56, reference="seed-alice"
    )
    await alice.send("/wallet")
    assert "USDT: 1,234.56 USDT available · 0.00 USDT held" in alice.last.text

    # typed amounts are read as before, whatever the language: "12.50" and "12,50" alike
    for typed in ("12.50", "12,50"):
        await ivan.send("/new")
        await ivan.press("Я продаю")
        await ivan.press("🔗 Пригласить по ссылке")
        await ivan.press("USDT")
        await ivan.send(typed)
        assert ivan.last.text.startswith("➕ Новая сделка · шаг 5 из 5"), typed
        await ivan.send("Старинная лампа")
        assert "Сумма: 12,50 USDT" in ivan.last.text
        assert "Комиссия: 0,18 USDT (1,5%)" in ivan.last.text
        await ivan.send("/cancel")
    # a date in Russian: the deadline on a card
    await ivan.send("/new")
    await ivan.press("Я продаю")
    await ivan.press("🔗 Пригласить по ссылке")
    await ivan.press("USDT")
    await ivan.send("1 234,56")  # the way amounts are shown to him is read back too
    await ivan.send("Старинная лампа")
    await ivan.press("✅ Создать сделку")
    card = next(m for m in ivan.messages if "Принять и оплатить нужно до" in m.text)
    assert re.search(
        r"до \d\d (янв|февр|мар|апр|мая|июн|июл|авг|сент|окт|нояб|дек)\. \d{4}, \d\d:\d\d UTC",
        card.text,
    )
    assert "Сумма: 1\u00a0234,56 USDT" in card.text
    assert await balance(app, ivan) == (1_234_56, 0)


async def test_the_command_menu_is_registered_in_each_language(app, telegram):
    await app.register_commands()
    english, russian = telegram.calls("setMyCommands")
    assert english.params.get("language_code") is None
    assert russian.params["language_code"] == "ru"
    assert [c.command for c in english.params["commands"]] == [
        c.command for c in russian.params["commands"]
    ]
    said = {c.command: c.description for c in russian.params["commands"]}
    assert (
        said["start"] == "Главное меню" and said["language"] == "Язык, на котором я с вами говорю"
    )
    assert {c.command: c.description for c in english.params["commands"]}["start"] == "Main menu"


# -- nothing left in English -------------------------------------------------------------


async def test_a_russian_speakers_screens_have_no_english_sentence(app, ivan, people):
    """A walk through the screens a user meets, with a refusal or two: every text
    and button is Russian (a name, a code or a currency is one word at most)."""
    admin = people.admin()
    await admin.start()
    seen = []

    def look() -> None:
        seen.extend([ivan.last.text, *ivan.buttons()])

    await ivan.start()
    look()
    for label in ("❓ Помощь", "« Меню", "👛 Кошелёк", "➕ Пополнить", "USDT"):
        await ivan.press(label)
        look()
    await ivan.send("много")  # not an amount
    look()
    await ivan.send("250")
    look()
    await ivan.press("➖ Вывести")
    look()
    await ivan.press("USDT · 250,00 USDT")
    look()
    await ivan.send("/cancel")
    look()
    for step in ("/new", "Я покупаю"):
        await (ivan.send(step) if step.startswith("/") else ivan.press(step))
        look()
    await ivan.send("@nobody_here")
    look()
    await ivan.press("🔗 Пригласить по ссылке")
    look()
    await ivan.press("USDT")
    look()
    await ivan.send("0")
    look()
    await ivan.send("100")
    look()
    await ivan.send("Старинная лампа")
    look()
    await ivan.press("✅ Создать сделку")
    seen.extend(m.text for m in ivan.messages[-2:])
    await ivan.press("📋 Мои сделки")
    look()
    await ivan.send("/deal NOSUCHDEAL")
    look()
    await ivan.send("что-то непонятное")
    look()
    await ivan.send("/admin")
    look()
    assert len(seen) > 60 and ENGLISH.search("Send the amount again, or /cancel.")
    english = [said for said in seen if ENGLISH.search(said)]
    assert english == []
