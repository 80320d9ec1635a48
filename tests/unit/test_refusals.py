"""Every refusal code has its sentence, every sentence its data, and every
refusal the buttons that resolve it."""

from datetime import UTC, datetime, timedelta
from string import Formatter

import pytest

from bot.services.errors import (
    EscrowError,
    InsufficientFunds,
    InvalidInput,
    NotAllowed,
    Paced,
    Refusal,
    TextField,
    WrongState,
)
from bot.services.money import Currencies, Currency
from bot.services.rules import Action, Role
from bot.telegram.keyboards import WalletMenu
from bot.telegram.refusals import (
    ACTION_WORDS,
    FIELD_WORDS,
    ROLE_WORDS,
    STATUS_WORDS,
    TEMPLATES,
    WITHDRAWAL_STATUS_WORDS,
    ChatRefusal,
    refusal_text,
)
from bot.telegram.resolutions import RESOLVED_BY, refusal_keyboard
from db.models import DealStatus, WithdrawalStatus

USDT = Currency("USDT", decimals=2, min_amount=1_00, max_amount=1_000_000_00, fee_bps=150)
CURRENCIES = Currencies({"USDT": USDT})
MONEY = {"currency": "USDT"}
DUE = datetime(2026, 12, 6, 14, 5, tzinfo=UTC)

# What each code is raised with: the data contract between the services and the words.
SAMPLES: dict[object, dict[str, object]] = {
    Refusal.NO_SUCH_DEAL: {},
    Refusal.START_FIRST: {},
    Refusal.ACCOUNT_BLOCKED: {},
    Refusal.REQUEST_UNUSABLE: {},
    Refusal.CHOOSE_ROLE: {},
    Refusal.SELF_DEAL: {},
    Refusal.PERSON_GONE: {},
    Refusal.CANT_TAKE_PART: {},
    Refusal.NOT_YOUR_ROLE: {"role": Role.BUYER, "action": Action.RELEASE},
    Refusal.ACTION_NOT_NOW: {
        "deal": "ABCD2345",
        "status": DealStatus.FUNDED,
        "action": Action.ACCEPT,
    },
    Refusal.CHANGED_SINCE_ASKED: {"deal": "ABCD2345", "status": DealStatus.FUNDED},
    Refusal.CHANGED_MEANWHILE: {"deal": "ABCD2345"},
    Refusal.NO_DISPUTE: {"deal": "ABCD2345", "status": DealStatus.RELEASED},
    Refusal.DISPUTE_OUTCOME: {},
    Refusal.ADMIN_SETTLES_DISPUTES: {},
    Refusal.FUNDING_SHORT: {"amount": 1_000_01, **MONEY},
    Refusal.HELD_FUNDS_MISSING: {},
    Refusal.NOT_OVERDUE: {"deal": "ABCD2345", "due_at": DUE},
    Refusal.PAST_DEADLINE: {"deal": "ABCD2345", "due_at": DUE},
    Refusal.TOO_MANY_DEALS: {"limit": 20, "until": DUE, "wait": timedelta(minutes=83)},
    Refusal.TOO_MANY_STRANGERS: {"limit": 20, "until": DUE, "wait": timedelta(seconds=10)},
    Refusal.NOT_COMPLETED: {"deal": "ABCD2345", "status": DealStatus.FUNDED},
    Refusal.RATING_STARS: {},
    Refusal.NOT_RATED: {"deal": "ABCD2345"},
    Refusal.INVITATION_NOT_VALID: {},
    Refusal.OWN_INVITATION: {},
    Refusal.ALREADY_A_PARTY: {},
    Refusal.INVITATION_USED: {},
    Refusal.INVITATION_EXPIRED: {},
    Refusal.INVITATION_FOR_SOMEONE_ELSE: {},
    Refusal.OPEN_INVITATION: {},
    Refusal.TEXT_EMPTY: {"field": TextField.REASON},
    Refusal.TEXT_TOO_LONG: {"field": TextField.DESCRIPTION, "length": 501, "limit": 500},
    Refusal.NOT_A_USERNAME: {},
    Refusal.NOT_A_NUMBER: {},
    Refusal.AMOUNT_NEGATIVE: {},
    Refusal.NON_ASCII_DIGITS: {},
    Refusal.AMBIGUOUS_AMOUNT: {"as_decimal": "1.500", "as_whole": "1500", "shortest": "1.5"},
    Refusal.AMOUNT_TEXT_TOO_LONG: {},
    Refusal.TOO_MANY_DECIMALS: {"currency": "USDT", "decimals": 2},
    Refusal.WHOLE_NUMBERS_ONLY: {"currency": "JPY"},
    Refusal.AMOUNT_NOT_POSITIVE: {},
    Refusal.AMOUNT_TOO_LARGE: {},
    Refusal.BELOW_MINIMUM: {"amount": 1_00, **MONEY},
    Refusal.ABOVE_MAXIMUM: {"amount": 1_000_000_00, **MONEY},
    Refusal.AMOUNT_OUT_OF_BOUNDS: {"minimum": 1_00, "maximum": 1_000_000_00, **MONEY},
    Refusal.UNKNOWN_CURRENCY: {"known": ("USDT", "TON")},
    Refusal.NOT_ENOUGH_FUNDS: {},
    Refusal.OVER_DEPOSIT_LIMIT: {"per_day": 50_00, "left": 20_00, **MONEY},
    Refusal.OVER_WITHDRAWAL_LIMIT: {"per_day": 30_00, "left": 5_00, **MONEY},
    Refusal.CANT_DEPOSIT: {},
    Refusal.CANT_WITHDRAW: {},
    Refusal.WITHDRAWAL_SHORT: {"amount": 12_00, **MONEY},
    Refusal.WITHDRAWAL_REQUESTED: {},
    Refusal.WITHDRAWAL_DECIDED: {"withdrawal": 7, "status": WithdrawalStatus.APPROVED},
    Refusal.INVOICE_NOT_CREATED: {},
    Refusal.ADMINS_ONLY: {},
    Refusal.ADMIN_DECIDES_WITHDRAWALS: {},
    Refusal.ADMIN_CREDITS_DEPOSITS: {},
    Refusal.NO_SUCH_USER: {},
    Refusal.PARTY_BLOCKED: {},
    Refusal.NOBODY_BY_THAT_NAME: {},
    Refusal.ALREADY_BLOCKED: {"name": "@carol"},
    Refusal.NOT_BLOCKED: {"name": "@carol"},
    Refusal.CANT_BLOCK_ADMIN: {},
    Refusal.DISPUTE_CLOSED: {"deal": "ABCD2345", "status": DealStatus.RELEASED},
    Refusal.EVIDENCE_LIMIT: {"limit": 10},
    Refusal.EVIDENCE_TOO_LARGE: {"megabytes": 20},
    Refusal.EVIDENCE_KIND: {},
    Refusal.SPLIT_OUT_OF_RANGE: {"amount": 100_00, **MONEY},
    ChatRefusal.IS_ME: {},
    ChatRefusal.IS_A_BOT: {},
    ChatRefusal.HIDDEN_FORWARD: {"name": "Alice"},
    ChatRefusal.NOT_A_PERSON: {},
    ChatRefusal.NOT_AN_ID: {},
    ChatRefusal.NOT_TEXT_COUNTERPARTY: {},
    ChatRefusal.NOT_TEXT_DESCRIPTION: {},
}


def test_every_code_has_a_sentence_and_sample_data():
    codes = set(Refusal) | set(ChatRefusal)
    assert set(TEMPLATES) == codes
    assert set(SAMPLES) == codes


@pytest.mark.parametrize("code", list(SAMPLES), ids=str)
def test_every_code_renders_with_every_placeholder_filled(code):
    data = SAMPLES[code]
    placeholders = {name for _, name, _, _ in Formatter().parse(TEMPLATES[code]) if name}
    # "unit" is derived from the currency; every other placeholder is data
    assert placeholders - {"unit"} <= set(data), f"{code}: {placeholders} needs more than {data}"
    text = refusal_text(EscrowError(code, **data), CURRENCIES)
    assert text and "{" not in text and "}" not in text
    assert text[0].isupper() or text[0] in "@0123456789"
    assert text.endswith((".", "?"))


def test_every_status_action_role_and_field_has_words():
    assert set(STATUS_WORDS) == set(DealStatus)
    assert set(WITHDRAWAL_STATUS_WORDS) == set(WithdrawalStatus)
    assert set(ACTION_WORDS) == set(Action)
    assert set(ROLE_WORDS) == set(Role)
    assert set(FIELD_WORDS) == set(TextField)


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (
            WrongState(
                Refusal.ACTION_NOT_NOW,
                deal="ABCD2345",
                status=DealStatus.RELEASED,
                action=Action.CANCEL,
            ),
            "Deal ABCD2345 is already released to the seller; you can't cancel it now.",
        ),
        (
            NotAllowed(Refusal.NOT_YOUR_ROLE, role=Role.COUNTERPARTY, action=Action.ACCEPT),
            "Only the other party can accept it.",
        ),
        (
            InsufficientFunds(Refusal.FUNDING_SHORT, amount=1_000_01, currency="USDT"),
            "Not enough funds: funding needs 1,000.01 USDT available.",
        ),
        (
            InvalidInput(Refusal.TEXT_TOO_LONG, field=TextField.NOTE, length=12, limit=10),
            "The note is too long: 12 characters, at most 10.",
        ),
        (
            WrongState(Refusal.WITHDRAWAL_DECIDED, withdrawal=7, status=WithdrawalStatus.PAID),
            "Withdrawal #7 is already paid.",
        ),
        (
            InvalidInput(Refusal.TOO_MANY_DECIMALS, currency="", decimals=2),
            "amounts have at most 2 decimal places.",
        ),
        (
            Paced(Refusal.TOO_MANY_DEALS, limit=20, until=DUE, wait=timedelta(minutes=83)),
            "You have opened 20 deals in the last hour, the most allowed. You can open the "
            "next one at 06 Dec 2026, 14:05 UTC (in 1 h 23 min).",
        ),
        (
            WrongState(Refusal.NOT_OVERDUE, deal="ABCD2345", due_at=DUE),
            "Deal ABCD2345 may be delivered until 06 Dec 2026, 14:05 UTC: only after that "
            "can you cancel it for a refund.",
        ),
    ],
)
def test_data_is_put_into_words(error, said):
    assert refusal_text(error, CURRENCIES) == said


def test_a_refusal_logs_as_its_code_and_data_not_a_sentence():
    error = WrongState(
        Refusal.CHANGED_SINCE_ASKED, current=object(), deal="ABCD2345", status=DealStatus.FUNDED
    )
    assert str(error) == "changed_since_asked(deal='ABCD2345', status='funded')"
    assert (error.code, error.data) == (
        Refusal.CHANGED_SINCE_ASKED,
        {"deal": "ABCD2345", "status": DealStatus.FUNDED},
    )
    assert str(NotAllowed(Refusal.ADMINS_ONLY)) == "admins_only"


# -- the buttons that resolve a refusal ------------------------------------------------


def labels(markup) -> list[list[str]]:
    return [[button.text for button in row] for row in markup.inline_keyboard]


def test_every_refusal_gets_the_menu_and_only_buttons_telegram_takes():
    assert set(RESOLVED_BY) <= set(Refusal)
    for code, data in SAMPLES.items():
        markup = refusal_keyboard(EscrowError(code, **data))
        assert labels(markup)[-1] == ["« Menu"], code
        for row in markup.inline_keyboard:
            for button in row:
                assert len(button.callback_data.encode()) <= 64, (code, button)


@pytest.mark.parametrize(
    ("error", "buttons"),
    [
        (
            InsufficientFunds(Refusal.FUNDING_SHORT, amount=1_000_01, currency="USDT"),
            [["➕ Deposit USDT"], ["« Menu"]],
        ),
        (InsufficientFunds(Refusal.NOT_ENOUGH_FUNDS), [["➕ Deposit"], ["« Menu"]]),
        (EscrowError(Refusal.NO_SUCH_DEAL), [["📋 My deals"], ["« Menu"]]),
        (
            NotAllowed(Refusal.NOT_YOUR_ROLE, role=Role.BUYER, action=Action.FUND),
            [["📋 My deals"], ["« Menu"]],
        ),
        (
            WrongState(
                Refusal.ACTION_NOT_NOW,
                deal="ABCD2345",
                status=DealStatus.RELEASED,
                action=Action.DISPUTE,
            ),
            [["📄 Deal #ABCD2345", "📋 My deals"], ["« Menu"]],
        ),
        (EscrowError(Refusal.SELF_DEAL), [["➕ New deal"], ["« Menu"]]),
        (
            EscrowError(Refusal.WITHDRAWAL_SHORT, amount=12_00, currency="USDT"),
            [["👛 Wallet"], ["« Menu"]],
        ),
        (EscrowError(Refusal.WITHDRAWAL_REQUESTED), [["🧾 Withdrawals"], ["« Menu"]]),
        (EscrowError(Refusal.NO_SUCH_USER), [["🛡 Admin"], ["« Menu"]]),
        (EscrowError(Refusal.ACCOUNT_BLOCKED), [["« Menu"]]),  # nothing resolves it here
    ],
    ids=lambda value: str(value) if isinstance(value, EscrowError) else "",
)
def test_each_refusal_offers_what_resolves_it(error, buttons):
    assert labels(refusal_keyboard(error)) == buttons


def test_the_deposit_button_opens_the_refused_currencys_deposit_form():
    markup = refusal_keyboard(
        InsufficientFunds(Refusal.FUNDING_SHORT, amount=1_00, currency="USDT")
    )
    assert (
        markup.inline_keyboard[0][0].callback_data
        == WalletMenu(screen="deposit", currency="USDT").pack()
    )
