"""config.toml decodes into typed settings; the environment overrides any value;
a bad value stops start-up with a message naming the key."""

from pathlib import Path

import pytest

from bot.config import DEFAULT_PATH, ConfigError, load_config

MINIMAL = """
[database]
url = "postgresql://app@db.internal:5432/escrow"

[currencies.USDT]
decimals = 2
min_amount = "1.00"
max_amount = "500.00"
fee_bps = 150
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(MINIMAL)
    return path


def test_the_committed_file_loads_and_holds_no_secrets():
    config = load_config(DEFAULT_PATH, environ={})
    assert config.telegram.token == ""
    assert config.database.password == ""
    assert config.payments.cryptopay_token == ""
    assert config.currency_table().codes == ("USDT", "BTC", "TON")


def test_defaults_fill_what_the_file_leaves_out(config_file):
    config = load_config(config_file, environ={})
    assert config.cache.l1_size > 0
    assert config.escrow.admins == ()
    assert config.currency_table()["USDT"].max_amount == 500_00
    # a bare postgresql:// URL runs on asyncpg
    assert config.database.sqlalchemy_url.drivername == "postgresql+asyncpg"


def test_environment_overrides_every_kind_of_value(config_file):
    config = load_config(
        config_file,
        environ={
            "ESCROW__DATABASE__PASSWORD": "s3cret",
            "ESCROW__DATABASE__POOL_SIZE": "25",
            "ESCROW__TELEGRAM__TOKEN": "123:abc",
            "ESCROW__ESCROW__ADMINS": "[42, 43]",
            "ESCROW__CACHE__L1_TTL_SECONDS": "2.5",
            "ESCROW__CURRENCIES__USDT__FEE_BPS": "99",
            "ESCROW__CURRENCIES__TON__DECIMALS": "9",
            "UNRELATED": "ignored",
        },
    )
    assert config.database.pool_size == 25
    assert config.database.sqlalchemy_url.password == "s3cret"
    assert config.telegram.token == "123:abc"
    assert config.escrow.admins == (42, 43)
    assert config.cache.l1_ttl_seconds == 2.5
    assert config.currency_table()["USDT"].fee_bps == 99
    assert config.currency_table()["TON"].decimals == 9


def test_config_path_comes_from_the_environment(config_file):
    config = load_config(environ={"ESCROW_CONFIG": str(config_file)})
    assert config.currency_table().codes == ("USDT",)


@pytest.mark.parametrize(
    ("environ", "key"),
    [
        ({"ESCROW__CACHE__L1_SIZE": "many"}, "cache.l1_size: Expected `int`"),
        ({"ESCROW__CACHE__L1_SIZE": "-1"}, "cache.l1_size: Expected `int` >= 0"),
        ({"ESCROW__CACHE__L1_SIZ": "5"}, "cache.l1_siz: unknown key"),
        ({"ESCROW__DATABASE__URL": "mysql://x/y"}, "database.url: must be a postgresql"),
        ({"ESCROW__REDIS__URL": "http://x"}, "redis.url: must be a redis"),
        ({"ESCROW__CURRENCIES__USDT__FEE_BPS": "90000"}, "currencies.USDT.fee_bps"),
        ({"ESCROW__CURRENCIES__USDT__MIN_AMOUNT": "cheap"}, "currencies.USDT.min_amount"),
        ({"ESCROW__CURRENCIES__USDT__MIN_AMOUNT": "900"}, "currencies.USDT.min_amount"),
        ({"ESCROW__CURRENCIES__USDT__DECIMALS": "30"}, "currencies.USDT.decimals"),
        ({"ESCROW__ESCROW__DEAL_DEADLINE_HOURS": "0"}, "escrow.deal_deadline_hours"),
        ({"ESCROW__ESCROW__ADMINS": '["me"]'}, "escrow.admins"),
        # what users type must fit the longest message showing it (4,096 characters)
        (
            {"ESCROW__ESCROW__DESCRIPTION_MAX_LENGTH": "2001"},
            "escrow.description_max_length: Expected `int` <= 2000",
        ),
        (
            {"ESCROW__ESCROW__REASON_MAX_LENGTH": "1001"},
            "escrow.reason_max_length: Expected `int` <= 1000",
        ),
        ({"ESCROW__RUNTIME__OUTBOX_GRACE_SECONDS": "1"}, "runtime: outbox_grace_seconds must"),
    ],
)
def test_a_bad_value_names_its_key(config_file, environ, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.").replace("`", ".")):
        load_config(config_file, environ=environ)


def test_overrides_name_the_variable_to_fix(config_file):
    with pytest.raises(ConfigError, match="ESCROW__CACHE__L1_SIZE"):
        load_config(config_file, environ={"ESCROW__CACHE__L1_SIZE": "many"})


def test_missing_and_broken_files_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.toml", environ={})
    broken = tmp_path / "broken.toml"
    broken.write_text("[database\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(broken, environ={})


def test_a_currency_is_required(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text("[database]\nurl = 'postgresql://x/y'\n")
    with pytest.raises(ConfigError, match="at least one currency"):
        load_config(path, environ={})


def test_updates_in_flight_are_bounded_by_the_database_pool_unless_configured(config_file):
    assert load_config(config_file, environ={}).max_updates_in_flight == 10 + 10
    pool = {"ESCROW__DATABASE__POOL_SIZE": "30", "ESCROW__DATABASE__MAX_OVERFLOW": "5"}
    assert load_config(config_file, environ=pool).max_updates_in_flight == 35
    configured = {**pool, "ESCROW__RUNTIME__MAX_UPDATES_IN_FLIGHT": "8"}
    assert load_config(config_file, environ=configured).max_updates_in_flight == 8


def test_daily_limits_are_read_in_major_units_and_zero_means_none(config_file):
    environ = {
        "ESCROW__CURRENCIES__USDT__DEPOSIT_LIMIT_PER_DAY": '"500.50"',
        "ESCROW__CURRENCIES__USDT__WITHDRAWAL_LIMIT_PER_DAY": "0",
    }
    usdt = load_config(config_file, environ=environ).currency_table()["USDT"]
    assert (usdt.deposit_limit_per_day, usdt.withdrawal_limit_per_day) == (500_50, 0)
    with pytest.raises(ConfigError, match=r"currencies\.USDT\.deposit_limit_per_day"):
        load_config(config_file, environ={"ESCROW__CURRENCIES__USDT__DEPOSIT_LIMIT_PER_DAY": "-1"})
