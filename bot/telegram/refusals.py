"""What the bot says when it refuses: a sentence for every refusal code.

The services refuse with a code and data (`bot.services.errors`); here the
data is put into words: amounts by their currency's formatter, statuses,
actions and roles by the tables below. A refusal the chat itself makes (a
forward it can't use, a message that isn't text) has a code of its own,
`ChatRefusal`.

A refusal shown to the user carries the buttons that resolve it
(`RESOLVED_BY`, `refusal_keyboard`): not enough funds leads to a deposit, a
deal that isn't there to "My deals", and any refusal to the menu.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Protocol

from bot.services.errors import EscrowError, Refusal, TextField
from bot.services.money import Currency
from bot.services.rules import Action, Role
from bot.telegram.i18n import N_, _
from bot.telegram.moments import duration, when
from bot.telegram.texts import NOT_ADMIN
from db.models import DealStatus, WithdrawalStatus


class ChatRefusal(enum.StrEnum):
    """What a chat sends that can't be used: only Telegram messages can be these."""

    IS_ME = "is_me"
    IS_A_BOT = "is_a_bot"
    HIDDEN_FORWARD = "hidden_forward"  # name
    NOT_A_PERSON = "not_a_person"
    NOT_AN_ID = "not_an_id"
    NOT_TEXT_COUNTERPARTY = "not_text_counterparty"
    NOT_TEXT_DESCRIPTION = "not_text_description"


class CurrencyLookup(Protocol):
    """`Currencies`, or any mapping of codes to `Currency`."""

    def __getitem__(self, code: str, /) -> Currency: ...


STATUS_WORDS = {
    DealStatus.PENDING: N_("waiting to be accepted"),
    DealStatus.ACCEPTED: N_("accepted and waiting for funding"),
    DealStatus.FUNDED: N_("funded"),
    DealStatus.DELIVERED: N_("marked as delivered"),
    DealStatus.DISPUTED: N_("in dispute"),
    DealStatus.RELEASED: N_("already released to the seller"),
    DealStatus.REFUNDED: N_("already refunded to the buyer"),
    DealStatus.CANCELLED: N_("cancelled"),
    DealStatus.DECLINED: N_("declined"),
    DealStatus.EXPIRED: N_("expired"),
    DealStatus.SPLIT: N_("already split by an admin"),
}

WITHDRAWAL_STATUS_WORDS = {
    WithdrawalStatus.PENDING: N_("pending"),
    WithdrawalStatus.APPROVED: N_("approved"),
    WithdrawalStatus.REJECTED: N_("rejected"),
    WithdrawalStatus.SENDING: N_("sending"),
    WithdrawalStatus.PAID: N_("paid"),
    WithdrawalStatus.FAILED: N_("failed"),
}

ACTION_WORDS = {
    Action.ACCEPT: N_("accept it"),
    Action.DECLINE: N_("decline it"),
    Action.FUND: N_("fund it"),
    Action.DELIVER: N_("mark it as delivered"),
    Action.RELEASE: N_("release it"),
    Action.DISPUTE: N_("open a dispute"),
    Action.CANCEL: N_("cancel it"),
    Action.REFUND: N_("cancel it for a refund"),
}

ROLE_WORDS = {
    Role.BUYER: N_("Only the buyer can"),
    Role.SELLER: N_("Only the seller can"),
    Role.COUNTERPARTY: N_("Only the other party can"),
    Role.EITHER: N_("Only a party to this deal can"),
}

FIELD_WORDS = {
    TextField.DESCRIPTION: N_("description"),
    TextField.REASON: N_("reason"),
    TextField.NOTE: N_("note"),
    TextField.REFERENCE: N_("reference"),
    TextField.DESTINATION: N_("destination"),
    TextField.EVIDENCE: N_("text"),
    TextField.REVIEW: N_("review"),
}

# Data keys that hold an amount in minor units of the refusal's `currency`.
MONEY = frozenset({"amount", "minimum", "maximum", "per_day", "left"})

TEMPLATES: dict[enum.Enum, str] = {
    # deals
    Refusal.NO_SUCH_DEAL: N_("No such deal."),
    Refusal.START_FIRST: N_("Send /start first."),
    Refusal.ACCOUNT_BLOCKED: N_(
        "Your account is blocked by the admins, so you can't do that. You can still view your "
        "deals and wallet."
    ),
    Refusal.REQUEST_UNUSABLE: N_("That request can't be used: start the deal again with /new."),
    Refusal.CHOOSE_ROLE: N_("Choose whether you are the buyer or the seller."),
    Refusal.SELF_DEAL: N_("You can't open a deal with yourself."),
    Refusal.PERSON_GONE: N_("The person you chose is no longer on the bot."),
    Refusal.CANT_TAKE_PART: N_("That user can't take part in deals."),
    Refusal.NOT_YOUR_ROLE: N_("{role} {action}."),
    Refusal.ACTION_NOT_NOW: N_("Deal {deal} is {status}; you can't {action} now."),
    Refusal.CHANGED_SINCE_ASKED: N_(
        "Deal {deal} has changed since you were asked: it is {status} now, so nothing was done."
    ),
    Refusal.CHANGED_MEANWHILE: N_("Deal {deal} changed meanwhile; try again."),
    Refusal.NO_DISPUTE: N_("Deal {deal} is {status}; there is no dispute to settle."),
    Refusal.DISPUTE_OUTCOME: N_("A dispute ends in a release or a refund."),
    Refusal.ADMIN_SETTLES_DISPUTES: N_("Only an admin can settle disputes."),
    Refusal.FUNDING_SHORT: N_("Not enough funds: funding needs {amount} available."),
    Refusal.HELD_FUNDS_MISSING: N_("The held funds are missing."),
    Refusal.NOT_OVERDUE: N_(
        "Deal {deal} may be delivered until {due_at}: only after that can you cancel it "
        "for a refund."
    ),
    Refusal.PAST_DEADLINE: N_(
        "Deal {deal} had to be accepted and funded by {due_at}. That time has passed, so "
        "it can no longer be accepted or funded. Nothing was changed."
    ),
    Refusal.TOO_MANY_DEALS: N_(
        "You have opened {limit} deals in the last hour, the most allowed. You can open "
        "the next one at {until} (in {wait})."
    ),
    Refusal.TOO_MANY_STRANGERS: N_(
        "You have opened deals with {limit} people you never had a funded deal with in "
        "the last 24 hours, the most allowed. You can invite someone new again at {until} "
        "(in {wait}); deals with people you have traded with, and invitation links, can "
        "be opened now."
    ),
    # ratings
    Refusal.NOT_COMPLETED: N_(
        "Deal {deal} is {status}: a deal can be rated once it is completed (released, or "
        "settled by an admin). Nothing was saved."
    ),
    Refusal.RATING_STARS: N_("A rating is 1 to 5 stars."),
    Refusal.NOT_RATED: N_("Rate deal {deal} with stars first; then you can add a review."),
    # invitations
    Refusal.INVITATION_NOT_VALID: N_("This invitation link is not valid."),
    Refusal.OWN_INVITATION: N_(
        "This is your own deal's invitation: send the link to the other party."
    ),
    Refusal.ALREADY_A_PARTY: N_("You are already a party to this deal."),
    Refusal.INVITATION_USED: N_("This invitation has already been used or withdrawn."),
    Refusal.INVITATION_EXPIRED: N_("This invitation has expired."),
    Refusal.INVITATION_FOR_SOMEONE_ELSE: N_("This invitation is addressed to someone else."),
    Refusal.OPEN_INVITATION: N_(
        "This link is open to anyone; if you don't want the deal, just ignore it."
    ),
    # text and names
    Refusal.TEXT_EMPTY: N_("The {field} can't be empty."),
    Refusal.TEXT_TOO_LONG: N_("The {field} is too long: {length} characters, at most {limit}."),
    Refusal.NOT_A_USERNAME: N_("That doesn't look like a Telegram @username."),
    # amounts and currencies
    Refusal.NOT_A_NUMBER: N_("Send the amount as a number, like 1250.50."),
    Refusal.AMOUNT_NEGATIVE: N_("The amount must be positive."),
    Refusal.NON_ASCII_DIGITS: N_("Use the digits 0-9, like 1250.50."),
    Refusal.AMBIGUOUS_AMOUNT: N_(
        "Did you mean {as_decimal} or {as_whole}? Send it as {shortest} or {as_whole}."
    ),
    Refusal.AMOUNT_TEXT_TOO_LONG: N_("That amount is too long."),
    Refusal.TOO_MANY_DECIMALS: N_("{unit}amounts have at most {decimals} decimal places."),
    Refusal.WHOLE_NUMBERS_ONLY: N_("{unit}amounts are whole numbers."),
    Refusal.AMOUNT_NOT_POSITIVE: N_("The amount must be more than zero."),
    Refusal.AMOUNT_TOO_LARGE: N_("That amount is too large."),
    Refusal.BELOW_MINIMUM: N_("The minimum is {amount}."),
    Refusal.ABOVE_MAXIMUM: N_("The maximum is {amount}."),
    Refusal.AMOUNT_OUT_OF_BOUNDS: N_("The amount must be between {minimum} and {maximum}."),
    Refusal.UNKNOWN_CURRENCY: N_("Unknown currency. Choose one of: {known}."),
    Refusal.NOT_ENOUGH_FUNDS: N_("Not enough funds."),
    # wallets
    Refusal.OVER_DEPOSIT_LIMIT: N_(
        "That is over your deposit limit of {per_day} a day: {left} left for the next 24 hours."
    ),
    Refusal.OVER_WITHDRAWAL_LIMIT: N_(
        "That is over your withdrawal limit of {per_day} a day: {left} left for the next 24 hours."
    ),
    Refusal.CANT_DEPOSIT: N_("Your account can't deposit funds."),
    Refusal.CANT_WITHDRAW: N_("Your account can't withdraw funds."),
    Refusal.WITHDRAWAL_SHORT: N_("Not enough funds: you have less than {amount} available."),
    Refusal.WITHDRAWAL_REQUESTED: N_("This withdrawal was already requested."),
    Refusal.WITHDRAWAL_DECIDED: N_("Withdrawal #{withdrawal} is already {status}."),
    Refusal.INVOICE_NOT_CREATED: N_(
        "Crypto Pay could not create the payment link just now. Nothing was charged: "
        "please try again in a moment."
    ),
    # admins
    Refusal.ADMINS_ONLY: NOT_ADMIN,
    Refusal.ADMIN_DECIDES_WITHDRAWALS: N_("Only an admin can decide withdrawals."),
    Refusal.ADMIN_CREDITS_DEPOSITS: N_("Only an admin can credit deposits."),
    Refusal.NO_SUCH_USER: N_("No user with that Telegram id has used the bot."),
    # blocking
    Refusal.PARTY_BLOCKED: N_(
        "This deal can't go ahead while one of its parties is blocked. It can still be cancelled."
    ),
    Refusal.NOBODY_BY_THAT_NAME: N_("Nobody with that Telegram id or @username has used the bot."),
    Refusal.ALREADY_BLOCKED: N_("{name} is already blocked."),
    Refusal.NOT_BLOCKED: N_("{name} is not blocked."),
    Refusal.CANT_BLOCK_ADMIN: N_("Admins can't be blocked."),
    # disputes
    Refusal.DISPUTE_CLOSED: N_(
        "Deal {deal} is {status}: evidence can be added only while its dispute is open."
    ),
    Refusal.EVIDENCE_LIMIT: N_(
        "You have sent the most evidence one party may send: {limit} items."
    ),
    Refusal.EVIDENCE_TOO_LARGE: N_("That file is too large: at most {megabytes} MB."),
    Refusal.EVIDENCE_KIND: N_("Evidence is a photo, a document or a text message."),
    Refusal.SPLIT_OUT_OF_RANGE: N_(
        "The seller's part must be more than nothing and less than the deal's {amount}."
    ),
    # the chat's own
    ChatRefusal.IS_ME: N_("That's me, the escrow bot: I can't be the other party."),
    ChatRefusal.IS_A_BOT: N_("Bots can't take part in deals."),
    ChatRefusal.HIDDEN_FORWARD: N_(
        "{name} hides their account in forwarded messages, so I can't tell who they are. "
        "Send their @username instead."
    ),
    ChatRefusal.NOT_A_PERSON: N_(
        "That message was forwarded from a chat or channel, not from a person."
    ),
    ChatRefusal.NOT_AN_ID: N_("That doesn't look like a Telegram user ID."),
    ChatRefusal.NOT_TEXT_COUNTERPARTY: N_("That isn't a username, an ID or a forwarded message."),
    ChatRefusal.NOT_TEXT_DESCRIPTION: N_("Please describe the deal in a text message."),
}


def refusal_text(error: EscrowError, currencies: CurrencyLookup) -> str:
    """The sentence for `error`, its data in words (plain text: the caller
    escapes it where it goes into HTML)."""
    return _(TEMPLATES[error.code]).format(**_words(error.data, currencies))


def _words(data: Mapping[str, Any], currencies: CurrencyLookup) -> dict[str, Any]:
    words = dict(data)
    code = data.get("currency")
    # "USDT amounts have at most 2 decimal places"; amounts of no currency in particular
    words["unit"] = f"{code} " if code else ""
    for key, value in data.items():
        if key in MONEY:
            words[key] = currencies[code].format(value)
        elif isinstance(value, DealStatus):
            words[key] = _(STATUS_WORDS[value])
        elif isinstance(value, WithdrawalStatus):
            words[key] = _(WITHDRAWAL_STATUS_WORDS[value])
        elif isinstance(value, Action):
            words[key] = _(ACTION_WORDS[value])
        elif isinstance(value, Role):
            words[key] = _(ROLE_WORDS[value])
        elif isinstance(value, TextField):
            words[key] = _(FIELD_WORDS[value])
        elif isinstance(value, datetime):
            words[key] = when(value)
        elif isinstance(value, timedelta):
            words[key] = duration(value)
        elif key == "known":
            words[key] = ", ".join(value)
    return words
