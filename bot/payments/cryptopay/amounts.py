"""Amounts between Crypto Pay's decimal strings and integer minor units: exact, or
refused (`InexactAmount`), never through a float."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation, localcontext


class InexactAmount(ValueError):
    """An amount that integer minor units of the currency cannot hold."""


def _decimal(amount: Decimal | str | int) -> Decimal:
    if isinstance(amount, float | bool):
        raise TypeError("amounts are Decimal, str or int, never float")
    try:
        value = Decimal(amount)
    except InvalidOperation:
        raise InexactAmount(f"not an amount: {amount!r}") from None
    if not value.is_finite():
        raise InexactAmount(f"not an amount: {amount!r}")
    return value


def to_minor_units(amount: Decimal | str | int, decimals: int, *, round_down: bool = False) -> int:
    """Integer minor units of an API amount (``"12.5"``, 2 decimals -> 1250).

    An amount finer than the currency's ``decimals`` is refused, unless
    ``round_down`` asks to drop the excess (never rounding up what was paid).
    """
    value = _decimal(amount)
    # Enough precision that scaling never rounds, however long the amount.
    shape = value.as_tuple()
    precision = len(shape.digits) + abs(int(shape.exponent)) + decimals + 1
    with localcontext(prec=max(precision, 28)):
        value = value.scaleb(decimals)
    whole = int(value)  # truncates toward zero
    if whole != value and not round_down:
        raise InexactAmount(f"{amount} has more than {decimals} decimals")
    return whole


def from_minor_units(minor: int, decimals: int) -> str:
    """The API's decimal string for integer minor units (1250, 2 -> ``"12.50"``)."""
    if isinstance(minor, bool) or not isinstance(minor, int):
        raise TypeError("minor units are an int")
    if decimals == 0:
        return str(minor)
    digits = str(abs(minor)).rjust(decimals + 1, "0")
    sign = "-" if minor < 0 else ""
    return f"{sign}{digits[:-decimals]}.{digits[-decimals:]}"


def amount_param(amount: Decimal | str | int) -> str:
    """The decimal string a request sends for a positive amount."""
    value = _decimal(amount)
    if value <= 0:
        raise InexactAmount(f"an amount must be positive: {amount!r}")
    return format(value, "f")
