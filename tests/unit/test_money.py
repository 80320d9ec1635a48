"""Typed amounts become exact integer minor units, or a clear refusal."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.services.errors import AmbiguousAmount, InvalidAmount, UnknownCurrency
from bot.services.money import (
    Currencies,
    Currency,
    CurrencySettings,
    format_minor_units,
    parse_minor_units,
)
from bot.telegram.refusals import refusal_text
from tests.refusals import refuses

USDT = Currency("USDT", decimals=2, min_amount=1_00, max_amount=1_000_000_00, fee_bps=150)
BTC = Currency("BTC", decimals=8, min_amount=10_000, max_amount=100 * 10**8, fee_bps=100)
JPY = Currency("JPY", decimals=0, min_amount=100, max_amount=10**9, fee_bps=0)


@pytest.mark.parametrize(
    ("text", "minor"),
    [
        ("1", 1_00),
        ("10.5", 10_50),
        ("10.50", 10_50),
        (" 12.34 ", 12_34),
        ("1.1", 1_10),
        ("1.", 1_00),
        ("5.", 5_00),
        ("12,5", 12_50),  # a decimal comma
        ("1,000", 1000_00),  # grouping, not a decimal comma
        ("1 000", 1000_00),
        ("999,999.99", 999_999_99),
        ("1.000.000,00", 1_000_000_00),
        ("1000000", 1_000_000_00),
    ],
)
def test_amounts_parse_exactly(text, minor):
    assert USDT.parse(text) == minor


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("abc", "as a number"),
        ("", "as a number"),
        ("-5", "must be positive"),
        ("1e309", "as a number"),
        ("NaN", "as a number"),
        ("inf", "as a number"),
        ("0x10", "as a number"),
        ("0.0000001", "at most 2 decimal places"),
        ("1,000,000.50", "maximum is 1,000,000.00 USDT"),
        ("0", "more than zero"),
        ("0.00", "more than zero"),
        ("0.99", "minimum is 1.00 USDT"),
        ("1" * 41, "too long"),
        ("1,00,0", "as a number"),
        ("1.2.3", "as a number"),
        ("10 USDT", "as a number"),
    ],
)
def test_bad_amounts_get_a_clear_message(text, message):
    with refuses(InvalidAmount, message, CURRENCIES):
        USDT.parse(text)


def test_fractions_below_one_unit_parse_exactly():
    assert parse_minor_units("0.1", 2, "USDT") == 10
    assert parse_minor_units(".5", 2, "USDT") == 50


def test_whole_number_currencies_refuse_fractions():
    with refuses(InvalidAmount, "JPY amounts are whole numbers", CURRENCIES):
        JPY.parse("100.5")
    assert JPY.parse("1,500") == 1500


def test_eight_decimals_are_exact():
    assert BTC.parse("0.00012345") == 12_345
    assert BTC.parse("0.1") == 10_000_000


@pytest.mark.parametrize(
    ("minor", "currency", "text"),
    [
        (1_000_000_50, USDT, "1,000,000.50 USDT"),
        (5, USDT, "0.05 USDT"),
        (0, USDT, "0.00 USDT"),
        (12_345, BTC, "0.00012345 BTC"),
        (10_000_000, BTC, "0.10 BTC"),
        (1500, JPY, "1,500 JPY"),
    ],
)
def test_formatting(minor, currency, text):
    assert currency.format(minor) == text


@given(st.integers(min_value=USDT.min_amount, max_value=USDT.max_amount))
def test_formatted_amounts_parse_back(minor):
    assert USDT.parse(format_minor_units(minor, 2)) == minor


@given(st.integers(min_value=BTC.min_amount, max_value=BTC.max_amount))
def test_formatted_amounts_parse_back_at_eight_decimals(minor):
    assert BTC.parse(format_minor_units(minor, 8)) == minor


def test_fee_is_rounded_down_in_the_users_favour():
    assert USDT.fee_for(100_00) == 1_50
    assert USDT.fee_for(1_01) == 1  # 1.515 cents
    assert JPY.fee_for(10**9) == 0


def test_currencies_from_settings_and_lookup():
    table = Currencies.from_settings(
        {"USDT": CurrencySettings(decimals=2, min_amount="1.00", max_amount="10", fee_bps=150)}
    )
    assert table["usdt"] == Currency("USDT", 2, 100, 1000, 150)
    with refuses(UnknownCurrency, "Unknown currency. Choose one of: USDT.", CURRENCIES):
        table["DOGE"]


# -- what people type: digits, separators and grouping -------------------------------

TON = Currency("TON", decimals=9, min_amount=10**8, max_amount=10**15, fee_bps=100)
CURRENCIES = Currencies({c.code: c for c in (USDT, BTC, JPY, TON)})


@pytest.mark.parametrize(
    ("text", "decimals", "minor"),
    [
        # a leading 0 group is never thousands grouping
        ("0,001", 8, 100_000),
        ("0,500", 2, 50),
        ("0,5", 2, 50),
        (",5", 2, 50),
        ("00,500", 8, 50_000_000),
        ("01,000", 8, 100_000_000),
        # zeros past the currency's decimals change nothing where grouping is ruled out
        ("0.500", 2, 50),
        ("12.3400", 2, 12_34),
        ("1,000.500", 2, 1000_50),
        # more than three digits before the mark: not grouping either
        ("1000,500", 8, 100_050_000_000),
        # anything but three digits after a single comma is a decimal comma
        ("1,5", 8, 150_000_000),
        ("1,50", 2, 1_50),
        ("1,5000", 8, 150_000_000),
        # in a currency with fewer than 3 decimals one comma and three digits is grouping
        ("1,500", 2, 1500_00),
        ("1,500", 0, 1500),
        ("999,999", 2, 999_999_00),
        # both marks: the last one is the decimal point, the other groups
        ("1,000,000.50", 2, 1_000_000_50),
        ("1.000.000,50", 2, 1_000_000_50),
        ("1.000,500", 8, 100_050_000_000),
        ("1,000.500", 8, 100_050_000_000),
        # several of one mark: grouping
        ("1,000,000", 2, 1_000_000_00),
        ("1.000.000", 2, 1_000_000_00),
        # spaces (also no-break and narrow no-break) and apostrophes only group
        ("1 000 000", 2, 1_000_000_00),
        ("1\u00a0000,50", 2, 1000_50),
        ("1\u202f000.5", 8, 100_050_000_000),
        ("1'000", 2, 1000_00),
        ("12'345.67", 2, 12_345_67),
        # a single dot is a decimal point
        ("1.500", 8, 150_000_000),
        ("0.015", 8, 1_500_000),
    ],
)
def test_separators_are_read_only_where_unambiguous(text, decimals, minor):
    assert parse_minor_units(text, decimals, "XYZ") == minor


@pytest.mark.parametrize(
    ("text", "currency", "asked"),
    [
        ("1,500", BTC, "Did you mean 1.500 or 1500? Send it as 1.5 or 1500."),
        ("12,345", BTC, "Did you mean 12.345 or 12345? Send it as 12.345 or 12345."),
        ("1,000", TON, "Did you mean 1.000 or 1000? Send it as 1 or 1000."),
        ("250,050", TON, "Did you mean 250.050 or 250050? Send it as 250.05 or 250050."),
    ],
)
def test_one_comma_and_three_digits_is_asked_back_where_both_readings_fit(text, currency, asked):
    with pytest.raises(AmbiguousAmount) as refused:
        currency.parse(text)
    assert refusal_text(refused.value, CURRENCIES) == asked
    # every caller that shows an InvalidAmount shows this one too
    assert isinstance(refused.value, InvalidAmount)


@pytest.mark.parametrize(
    "text",
    [
        "١٠٠",  # Arabic-Indic digits
        "۱۰۰",  # Extended Arabic-Indic (Persian) digits
        "１００",  # full-width digits
        "1٠0",  # mixed scripts
        "१००",  # Devanagari
        "10.５",
    ],
)
def test_only_ascii_digits_are_numbers(text):
    with refuses(InvalidAmount, "digits 0-9", CURRENCIES):
        USDT.parse(text)


@pytest.mark.parametrize(
    ("text", "decimals"),
    [
        ("1.500", 2),  # 1.5 or a German 1500: refused, not guessed
        ("1.005", 2),
        ("0.001", 2),
    ],
)
def test_decimals_beyond_the_currencys_are_refused(text, decimals):
    with refuses(InvalidAmount, "USDT amounts have at most 2 decimal places", CURRENCIES):
        parse_minor_units(text, decimals, "USDT")


@pytest.mark.parametrize(
    "text",
    [
        "1_000",
        "1__0",
        "0,001,000",  # a leading 0 group
        "1,0000,000",
        "1,000 000",  # two kinds of grouping
        "1 000,000.5",
        "1  000",
        "1,000.000,5",
        "1.000,000.5",
        "1,,5",
        "1.,5",
        ",",
        ".",
        "1,000,",
        "'1000",
        "1'000'00",
        "+5",
        "5-",
        "1 5",
    ],
)
def test_malformed_numbers_are_refused(text):
    with refuses(InvalidAmount, "as a number", CURRENCIES):
        BTC.parse(text)
