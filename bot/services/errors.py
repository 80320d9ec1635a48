"""Domain errors: a refusal's code and the data that explains it, never a sentence.

The edge that talks to the user (`bot/telegram/refusals.py`) turns each code
into words. Amounts travel as integer minor units with their currency's code,
statuses, actions and roles as their enums, limits and lengths as ints.
"""

from __future__ import annotations

import enum
from typing import Any


class Refusal(enum.StrEnum):
    # deals
    NO_SUCH_DEAL = "no_such_deal"
    START_FIRST = "start_first"
    ACCOUNT_BLOCKED = "account_blocked"
    REQUEST_UNUSABLE = "request_unusable"  # a create key that can't be one
    CHOOSE_ROLE = "choose_role"
    SELF_DEAL = "self_deal"
    PERSON_GONE = "person_gone"
    CANT_TAKE_PART = "cant_take_part"
    NOT_YOUR_ROLE = "not_your_role"  # role, action
    ACTION_NOT_NOW = "action_not_now"  # deal, status, action
    CHANGED_SINCE_ASKED = "changed_since_asked"  # deal, status
    CHANGED_MEANWHILE = "changed_meanwhile"  # deal
    NO_DISPUTE = "no_dispute"  # deal, status
    DISPUTE_OUTCOME = "dispute_outcome"
    ADMIN_SETTLES_DISPUTES = "admin_settles_disputes"
    FUNDING_SHORT = "funding_short"  # amount, currency
    HELD_FUNDS_MISSING = "held_funds_missing"
    NOT_OVERDUE = "not_overdue"  # deal, due_at: the delivery deadline has not passed
    PAST_DEADLINE = "past_deadline"  # deal, due_at: not accepted and funded by its deadline
    # anti-spam: limit, until (when one more is allowed), wait (how long until then)
    TOO_MANY_DEALS = "too_many_deals"
    TOO_MANY_STRANGERS = "too_many_strangers"
    # ratings
    NOT_COMPLETED = "not_completed"  # deal, status
    RATING_STARS = "rating_stars"
    NOT_RATED = "not_rated"  # deal
    # invitations
    INVITATION_NOT_VALID = "invitation_not_valid"
    OWN_INVITATION = "own_invitation"
    ALREADY_A_PARTY = "already_a_party"
    INVITATION_USED = "invitation_used"
    INVITATION_EXPIRED = "invitation_expired"
    INVITATION_FOR_SOMEONE_ELSE = "invitation_for_someone_else"
    OPEN_INVITATION = "open_invitation"
    # text and names
    TEXT_EMPTY = "text_empty"  # field
    TEXT_TOO_LONG = "text_too_long"  # field, length, limit
    NOT_A_USERNAME = "not_a_username"
    # amounts and currencies
    NOT_A_NUMBER = "not_a_number"
    AMOUNT_NEGATIVE = "amount_negative"
    NON_ASCII_DIGITS = "non_ascii_digits"
    AMBIGUOUS_AMOUNT = "ambiguous_amount"  # as_decimal, as_whole, shortest
    AMOUNT_TEXT_TOO_LONG = "amount_text_too_long"
    TOO_MANY_DECIMALS = "too_many_decimals"  # currency, decimals
    WHOLE_NUMBERS_ONLY = "whole_numbers_only"  # currency
    AMOUNT_NOT_POSITIVE = "amount_not_positive"
    AMOUNT_TOO_LARGE = "amount_too_large"
    BELOW_MINIMUM = "below_minimum"  # amount, currency
    ABOVE_MAXIMUM = "above_maximum"  # amount, currency
    AMOUNT_OUT_OF_BOUNDS = "amount_out_of_bounds"  # minimum, maximum, currency
    UNKNOWN_CURRENCY = "unknown_currency"  # known
    NOT_ENOUGH_FUNDS = "not_enough_funds"
    # wallets
    OVER_DEPOSIT_LIMIT = "over_deposit_limit"  # per_day, left, currency
    OVER_WITHDRAWAL_LIMIT = "over_withdrawal_limit"  # per_day, left, currency
    CANT_DEPOSIT = "cant_deposit"
    CANT_WITHDRAW = "cant_withdraw"
    WITHDRAWAL_SHORT = "withdrawal_short"  # amount, currency
    WITHDRAWAL_REQUESTED = "withdrawal_requested"
    WITHDRAWAL_DECIDED = "withdrawal_decided"  # withdrawal, status
    INVOICE_NOT_CREATED = "invoice_not_created"
    # admins
    ADMINS_ONLY = "admins_only"
    ADMIN_DECIDES_WITHDRAWALS = "admin_decides_withdrawals"
    ADMIN_CREDITS_DEPOSITS = "admin_credits_deposits"
    NO_SUCH_USER = "no_such_user"
    # blocking
    PARTY_BLOCKED = "party_blocked"  # a party of the deal is blocked: no accept, fund, create
    NOBODY_BY_THAT_NAME = "nobody_by_that_name"  # no user with that id or @username
    ALREADY_BLOCKED = "already_blocked"  # name
    NOT_BLOCKED = "not_blocked"  # name
    CANT_BLOCK_ADMIN = "cant_block_admin"
    # disputes: evidence and split settlements
    DISPUTE_CLOSED = "dispute_closed"  # deal, status
    EVIDENCE_LIMIT = "evidence_limit"  # limit
    EVIDENCE_TOO_LARGE = "evidence_too_large"  # megabytes
    EVIDENCE_KIND = "evidence_kind"
    SPLIT_OUT_OF_RANGE = "split_out_of_range"  # amount, currency


class TextField(enum.StrEnum):
    """Which bounded text a TEXT_EMPTY / TEXT_TOO_LONG refusal is about."""

    DESCRIPTION = "description"
    REASON = "reason"
    NOTE = "note"
    REFERENCE = "reference"
    DESTINATION = "destination"
    EVIDENCE = "evidence"
    REVIEW = "review"


class EscrowError(Exception):
    """A request that was refused; nothing was changed.

    `code` says which refusal (a `Refusal`, or a code of the edge's own), `data`
    what it is about."""

    def __init__(self, code: enum.Enum, /, **data: Any) -> None:
        super().__init__(code, data)
        self.code = code
        self.data = data

    def __str__(self) -> str:
        details = ", ".join(f"{key}={_plain(value)!r}" for key, value in self.data.items())
        return f"{self.code.value}({details})" if details else str(self.code.value)


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, enum.Enum) else value


class InvalidInput(EscrowError):
    """Text that cannot be used as given (too long, empty, malformed)."""


class InvalidAmount(InvalidInput):
    """Not an amount, or an amount outside the currency's bounds."""


class AmbiguousAmount(InvalidAmount):
    """An amount that reads two ways ("1,500" in a currency with 3 or more
    decimals): the user is asked which one was meant."""


class UnknownCurrency(InvalidInput):
    pass


class NotFound(EscrowError):
    pass


class NotAllowed(EscrowError):
    """The caller has no right to do this (not a party, wrong role, not an admin)."""


class UserBlocked(NotAllowed):
    pass


class SelfDeal(InvalidInput):
    pass


class InsufficientFunds(EscrowError):
    pass


class Paced(NotAllowed):
    """Over a per-user limit of a window; `until` says when it is allowed again."""


class InvitationUnavailable(EscrowError):
    pass


class WrongState(EscrowError):
    """The deal (or withdrawal) is not in a state that allows the action.

    A double press, a retry or a race lost to another replica ends here; `current`
    is the thing as it really is now, so the caller can show it.
    """

    def __init__(self, code: enum.Enum, /, current: Any = None, **data: Any) -> None:
        super().__init__(code, **data)
        self.current = current


class AlreadyDone(WrongState):
    """The deal is already where the action would take it, and the move was the
    actor's own: a double press, or a press Telegram delivered again after its
    commit. Nothing was changed now; the caller may show it as the success it
    is. Its code says the same as `WrongState`'s for whoever reads it as one.
    Also a withdrawal request made again with its reference: `current` is the
    withdrawal the first one made."""
