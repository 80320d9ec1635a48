"""Domain errors. Each carries a message fit to show the user who caused it."""

from __future__ import annotations

from typing import Any


class EscrowError(Exception):
    """A request that was refused; nothing was changed."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(EscrowError):
    """Text that cannot be used as given (too long, empty, malformed)."""


class InvalidAmount(InvalidInput):
    """Not an amount, or an amount outside the currency's bounds."""


class AmbiguousAmount(InvalidAmount):
    """An amount that reads two ways ("1,500" in a currency with 3 or more
    decimals): the message asks which one was meant."""


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


class InvitationUnavailable(EscrowError):
    pass


class WrongState(EscrowError):
    """The deal (or withdrawal) is not in a state that allows the action.

    A double press, a retry or a race lost to another replica ends here; `current`
    is the thing as it really is now, so the caller can show it.
    """

    def __init__(self, message: str, current: Any = None) -> None:
        super().__init__(message)
        self.current = current
