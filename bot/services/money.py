"""Amounts: exact parsing into integer minor units, formatting, fees.

No floats anywhere: "0.1" is one tenth, not 0.1000000000000000055.
"""

from __future__ import annotations

import re
from typing import Annotated

import msgspec

from bot.services.errors import InvalidAmount, UnknownCurrency

MAX_AMOUNT_TEXT = 40
# Balances are BIGINT; keeping every single amount far below its range means
# no sum of them can overflow in practice.
MAX_MINOR_UNITS = 10**15

_GROUPED = re.compile(r"\d{1,3}(?:[,\u00a0 '_]\d{3})+")
_PLAIN = re.compile(r"\d+(?:\.\d*)?|\.\d+")


class Currency(msgspec.Struct, frozen=True):
    code: str
    decimals: int
    min_amount: int  # minor units
    max_amount: int  # minor units
    fee_bps: int

    def fee_for(self, amount: int) -> int:
        """The platform fee on `amount`, rounded down in the user's favour."""
        return amount * self.fee_bps // 10_000

    def parse(self, text: str) -> int:
        """Exact minor units of a typed amount within the currency's bounds."""
        amount = parse_minor_units(text, self.decimals, self.code)
        if amount < self.min_amount:
            raise InvalidAmount(f"The minimum is {self.format(self.min_amount)}.")
        if amount > self.max_amount:
            raise InvalidAmount(f"The maximum is {self.format(self.max_amount)}.")
        return amount

    def format(self, amount: int) -> str:
        return f"{format_minor_units(amount, self.decimals)} {self.code}"


class CurrencySettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A currency as written in config.toml; bounds in major units ("10.50")."""

    decimals: Annotated[int, msgspec.Meta(ge=0, le=12)] = 2
    # Written as text ("0.0001") so no float ever rounds them; whole numbers may be bare.
    min_amount: str | int = "1"
    max_amount: str | int = "1000000"
    fee_bps: Annotated[int, msgspec.Meta(ge=0, le=5000)] = 0

    def __post_init__(self) -> None:
        low, high = self._bound("min_amount"), self._bound("max_amount")
        if low > high:
            raise ValueError("min_amount: must not be above max_amount")

    def _bound(self, name: str) -> int:
        try:
            return parse_minor_units(str(getattr(self, name)), self.decimals, "")
        except InvalidAmount as exc:
            raise ValueError(f"{name}: {exc.message}") from None

    def currency(self, code: str) -> Currency:
        return Currency(
            code=code,
            decimals=self.decimals,
            min_amount=self._bound("min_amount"),
            max_amount=self._bound("max_amount"),
            fee_bps=self.fee_bps,
        )


class Currencies:
    """The configured currencies, looked up by code."""

    def __init__(self, currencies: dict[str, Currency]) -> None:
        self._by_code = dict(currencies)

    @classmethod
    def from_settings(cls, settings: dict[str, CurrencySettings]) -> Currencies:
        return cls({code: s.currency(code) for code, s in settings.items()})

    def __getitem__(self, code: str) -> Currency:
        try:
            return self._by_code[code.upper()]
        except KeyError:
            known = ", ".join(self._by_code)
            raise UnknownCurrency(f"Unknown currency. Choose one of: {known}.") from None

    def __iter__(self):
        return iter(self._by_code.values())

    def __len__(self) -> int:
        return len(self._by_code)

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(self._by_code)


def _normalise(text: str) -> str:
    """Drop grouping separators and settle which mark is the decimal point."""
    text = text.strip()
    if "," in text and "." in text:
        # "1,000,000.50" or "1.000.000,50": the last mark is the decimal point.
        decimal = "." if text.rfind(".") > text.rfind(",") else ","
        group = "," if decimal == "." else "."
        whole, _, fraction = text.rpartition(decimal)
        if not _GROUPED.fullmatch(whole.replace(group, ",")):
            raise InvalidAmount("Use digits with one decimal point, like 1250.50.")
        return whole.replace(group, "") + "." + fraction
    if _GROUPED.fullmatch(text):  # "1,000,000", "1 000 000", "1'000"
        return re.sub(r"[,\u00a0 '_]", "", text)
    if text.count(",") == 1:  # "12,5": a decimal comma
        return text.replace(",", ".")
    return text


def parse_minor_units(text: str, decimals: int, code: str) -> int:
    if len(text) > MAX_AMOUNT_TEXT:
        raise InvalidAmount("That amount is too long.")
    plain = _normalise(text)
    if plain.startswith("-"):
        raise InvalidAmount("The amount must be positive.")
    if not _PLAIN.fullmatch(plain):
        raise InvalidAmount("Send the amount as a number, like 1250.50.")
    whole, _, fraction = plain.partition(".")
    if len(fraction) > decimals:
        unit = f"{code} " if code else ""
        raise InvalidAmount(
            f"{unit}amounts have at most {decimals} decimal places."
            if decimals
            else f"{unit}amounts are whole numbers."
        )
    amount = int(whole or "0") * 10**decimals + int(fraction.ljust(decimals, "0") or "0")
    if amount <= 0:
        raise InvalidAmount("The amount must be more than zero.")
    if amount > MAX_MINOR_UNITS:
        raise InvalidAmount("That amount is too large.")
    return amount


def format_minor_units(amount: int, decimals: int) -> str:
    """1234567 with 2 decimals → "12,345.67"; trailing zeros beyond two are dropped."""
    sign = "-" if amount < 0 else ""
    whole, fraction = divmod(abs(amount), 10**decimals)
    text = f"{sign}{whole:,}"
    if decimals:
        digits = str(fraction).rjust(decimals, "0")
        keep = max(min(2, decimals), len(digits.rstrip("0")))
        text += "." + digits[:keep]
    return text
