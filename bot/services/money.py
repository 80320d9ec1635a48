"""Amounts: exact parsing into integer minor units, formatting, fees.

No floats anywhere: "0.1" is one tenth, not 0.1000000000000000055.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Annotated

import msgspec
from babel.numbers import get_decimal_symbol, get_group_symbol

from bot.services.errors import AmbiguousAmount, InvalidAmount, Refusal, UnknownCurrency

MAX_AMOUNT_TEXT = 40
# Balances are BIGINT; keeping every single amount far below its range means
# no sum of them can overflow in practice.
MAX_MINOR_UNITS = 10**15

# Typed amounts: ASCII digits (never Unicode's other digits, which `\d` and
# int() accept), the two decimal marks and the grouping spaces and apostrophes.
_SPACE_GROUPS = " \u00a0\u202f'\u2019"
_ALLOWED = re.compile(f"[0-9.,{_SPACE_GROUPS}]+")
_DIGITS = re.compile("[0-9]+")
# The first group of a grouped number: 1-3 digits, not starting with 0.
_LEADING_GROUP = re.compile("[1-9][0-9]{0,2}")
_PLAIN = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+")


class Currency(msgspec.Struct, frozen=True):
    code: str
    decimals: int
    min_amount: int  # minor units
    max_amount: int  # minor units
    fee_bps: int
    # What one user may deposit / withdraw in 24 hours, in minor units (0: no limit).
    deposit_limit_per_day: int = 0
    withdrawal_limit_per_day: int = 0
    # A withdrawal up to this is paid by the payment provider without an admin (0: never).
    auto_payout_up_to: int = 0
    # How amounts are written (Babel's symbols for this locale): "1,234.56 USDT"
    # in English, "1 234,56 USDT" in Russian. Typed amounts are read alike in any.
    locale: str = "en"

    def fee_for(self, amount: int) -> int:
        """The platform fee on `amount`, rounded down in the user's favour."""
        return amount * self.fee_bps // 10_000

    def parse(self, text: str) -> int:
        """Exact minor units of a typed amount within the currency's bounds."""
        amount = parse_minor_units(text, self.decimals, self.code)
        if amount < self.min_amount:
            raise InvalidAmount(Refusal.BELOW_MINIMUM, amount=self.min_amount, currency=self.code)
        if amount > self.max_amount:
            raise InvalidAmount(Refusal.ABOVE_MAXIMUM, amount=self.max_amount, currency=self.code)
        return amount

    def format(self, amount: int) -> str:
        return f"{format_minor_units(amount, self.decimals, self.locale)} {self.code}"


class CurrencySettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A currency as written in config.toml; bounds in major units ("10.50")."""

    decimals: Annotated[int, msgspec.Meta(ge=0, le=12)] = 2
    # Written as text ("0.0001") so no float ever rounds them; whole numbers may be bare.
    min_amount: str | int = "1"
    max_amount: str | int = "1000000"
    fee_bps: Annotated[int, msgspec.Meta(ge=0, le=5000)] = 0
    # What one user may deposit (through a payment provider) and withdraw in 24
    # hours, in major units; "0": no limit.
    deposit_limit_per_day: str | int = "0"
    withdrawal_limit_per_day: str | int = "0"
    # With a payment provider that pays out (Crypto Pay), a withdrawal up to this
    # is paid at once, without an admin's approval; "0": every one waits for one.
    auto_payout_up_to: str | int = "0"

    def __post_init__(self) -> None:
        low, high = self._bound("min_amount"), self._bound("max_amount")
        if low > high:
            raise ValueError("min_amount: must not be above max_amount")
        self._limit("deposit_limit_per_day")
        self._limit("withdrawal_limit_per_day")
        self._limit("auto_payout_up_to")

    def _bound(self, name: str) -> int:
        try:
            return parse_minor_units(str(getattr(self, name)), self.decimals, "")
        except InvalidAmount as exc:
            raise ValueError(f"{name}: not a usable amount ({exc})") from None

    def _limit(self, name: str) -> int:
        """A daily limit in minor units; 0 (written "0") for none."""
        if str(getattr(self, name)).strip() in ("0", ""):
            return 0
        return self._bound(name)

    def currency(self, code: str) -> Currency:
        return Currency(
            code=code,
            decimals=self.decimals,
            min_amount=self._bound("min_amount"),
            max_amount=self._bound("max_amount"),
            fee_bps=self.fee_bps,
            deposit_limit_per_day=self._limit("deposit_limit_per_day"),
            withdrawal_limit_per_day=self._limit("withdrawal_limit_per_day"),
            auto_payout_up_to=self._limit("auto_payout_up_to"),
        )


class Currencies:
    """The configured currencies, looked up by code."""

    def __init__(self, currencies: dict[str, Currency]) -> None:
        self._by_code = dict(currencies)
        self._locales: dict[str, Currencies] = {}

    @classmethod
    def from_settings(cls, settings: dict[str, CurrencySettings]) -> Currencies:
        return cls({code: s.currency(code) for code, s in settings.items()})

    def __getitem__(self, code: str) -> Currency:
        try:
            return self._by_code[code.upper()]
        except KeyError:
            raise UnknownCurrency(Refusal.UNKNOWN_CURRENCY, known=tuple(self._by_code)) from None

    def __iter__(self):
        return iter(self._by_code.values())

    def __len__(self) -> int:
        return len(self._by_code)

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(self._by_code)

    def in_locale(self, locale: str) -> Currencies:
        """The same currencies, their amounts written as `locale` writes numbers
        (one object per locale, made once)."""
        found = self._locales.get(locale)
        if found is None:
            found = Currencies(
                {
                    code: msgspec.structs.replace(c, locale=locale)
                    for code, c in self._by_code.items()
                }
            )
            self._locales[locale] = found
        return found


def _grouped(whole: str, group: str) -> bool:
    """`whole` is thousands grouped with `group`: "1,000,000", never "0,001"."""
    head, *rest = whole.split(group)
    return (
        bool(rest)
        and _LEADING_GROUP.fullmatch(head) is not None
        and all(_DIGITS.fullmatch(part) and len(part) == 3 for part in rest)
    )


def _normalise(text: str, decimals: int) -> str:
    """Plain "digits[.digits]" from what a person typed: grouping dropped where
    it can only be grouping, the decimal mark settled, anything else refused."""
    text = text.strip()
    if text.startswith("-"):
        raise InvalidAmount(Refusal.AMOUNT_NEGATIVE)
    if any(char.isdigit() and not char.isascii() for char in text):
        # int() would take them, but a look-alike digit is not what the user saw
        raise InvalidAmount(Refusal.NON_ASCII_DIGITS)
    if _ALLOWED.fullmatch(text) is None:
        raise InvalidAmount(Refusal.NOT_A_NUMBER)
    spaced = {char for char in text if char in _SPACE_GROUPS}
    marks = [char for char in text if char in ".,"]
    if len(spaced) > 1:  # "1 000'000": two kinds of grouping
        raise InvalidAmount(Refusal.NOT_A_NUMBER)
    if len(set(marks)) == 2:
        # "1,000,000.50" or "1.000.000,50": the last mark is the decimal point
        decimal = marks[-1]
        group = "," if decimal == "." else "."
        if marks.count(decimal) > 1 or spaced:
            raise InvalidAmount(Refusal.NOT_A_NUMBER)
        whole, _, fraction = text.partition(decimal)
        if not _grouped(whole, group):
            raise InvalidAmount(Refusal.NOT_A_NUMBER)
        return whole.replace(group, "") + "." + fraction
    mark = marks[0] if marks else None
    if spaced:  # "1 000 000", "1'000", "1 000,50": spaces and apostrophes only group
        group = spaced.pop()
        whole, _, fraction = text.partition(mark) if mark else (text, "", "")
        if (mark and marks.count(mark) > 1) or not _grouped(whole, group):
            raise InvalidAmount(Refusal.NOT_A_NUMBER)
        return whole.replace(group, "") + "." + fraction
    if mark is None:
        return text
    if len(marks) > 1:  # "1,000,000" or "1.000.000": only grouping repeats
        if not _grouped(text, mark):
            raise InvalidAmount(Refusal.NOT_A_NUMBER)
        return text.replace(mark, "")
    whole, _, fraction = text.partition(mark)
    if mark == "," and len(fraction) == 3 and _LEADING_GROUP.fullmatch(whole):
        # "1,500": grouping where amounts have fewer than 3 decimals; where they
        # have 3 or more, 1.5 and 1500 are both plausible, so the user says which.
        if decimals < 3:
            return whole + fraction
        meant = (whole + "." + fraction).rstrip("0").rstrip(".")
        raise AmbiguousAmount(
            Refusal.AMBIGUOUS_AMOUNT,
            as_decimal=f"{whole}.{fraction}",
            as_whole=whole + fraction,
            shortest=meant,
        )
    # "12,5", "0,500" (a leading 0 is never a thousands group), "1000,5", "1.500"
    return whole + "." + fraction


def parse_minor_units(text: str, decimals: int, code: str) -> int:
    if len(text) > MAX_AMOUNT_TEXT:
        raise InvalidAmount(Refusal.AMOUNT_TEXT_TOO_LONG)
    plain = _normalise(text, decimals)
    if not _PLAIN.fullmatch(plain):
        raise InvalidAmount(Refusal.NOT_A_NUMBER)
    whole, _, fraction = plain.partition(".")
    if (
        len(fraction) > decimals
        and not fraction[decimals:].strip("0")
        and not (len(fraction) == 3 and _LEADING_GROUP.fullmatch(whole))
    ):
        # "0,500" or "12.3400" in cents: the zeros say nothing; "1.500" might
        # be a thousands group, so it is refused below rather than read as 1.50.
        fraction = fraction[:decimals]
    if len(fraction) > decimals:
        if decimals:
            raise InvalidAmount(Refusal.TOO_MANY_DECIMALS, currency=code, decimals=decimals)
        raise InvalidAmount(Refusal.WHOLE_NUMBERS_ONLY, currency=code)
    amount = int(whole or "0") * 10**decimals + int(fraction.ljust(decimals, "0") or "0")
    if amount <= 0:
        raise InvalidAmount(Refusal.AMOUNT_NOT_POSITIVE)
    if amount > MAX_MINOR_UNITS:
        raise InvalidAmount(Refusal.AMOUNT_TOO_LARGE)
    return amount


@cache
def number_symbols(locale: str) -> tuple[str, str]:
    """The thousands separator and the decimal mark `locale` writes (Babel's
    CLDR data, looked up once): (",", ".") in English, ("\u00a0", ",") in Russian."""
    return get_group_symbol(locale), get_decimal_symbol(locale)


def format_minor_units(amount: int, decimals: int, locale: str = "en") -> str:
    """1234567 with 2 decimals → "12,345.67" ("12 345,67" in Russian); trailing
    zeros beyond two are dropped."""
    group, mark = number_symbols(locale)
    sign = "-" if amount < 0 else ""
    whole, fraction = divmod(abs(amount), 10**decimals)
    text = f"{sign}{whole:,}".replace(",", group)
    if decimals:
        digits = str(fraction).rjust(decimals, "0")
        keep = max(min(2, decimals), len(digits.rstrip("0")))
        text += mark + digits[:keep]
    return text
