"""The one configuration: config.toml decoded into typed structs, with every
value overridable from the environment (ESCROW__<SECTION>__<KEY>).

Each layer owns its settings struct; this module only composes them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from bot.services.money import Currencies, CurrencySettings
from bot.services.settings import EscrowSettings
from cache.settings import CacheSettings, RedisSettings
from db.engine import DatabaseSettings

ENV_PREFIX = "ESCROW__"
CONFIG_PATH_VARIABLE = "ESCROW_CONFIG"
DEFAULT_PATH = Path(__file__).resolve().parent.parent / "config.toml"
_CURRENCY_CODE = re.compile(r"[A-Z][A-Z0-9]{1,9}")


class TelegramSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    # Kept out of the committed file: set ESCROW__TELEGRAM__TOKEN.
    token: str = ""
    api_base: str = "https://api.telegram.org"
    # Signs deal buttons (ESCROW__TELEGRAM__CALLBACK_SECRET); every replica
    # needs the same one. Empty: derived from the token.
    callback_secret: str = ""
    # With a token: "polling" for a single instance, "webhook" for several
    # replicas behind a load balancer. Without a token `run` starts local mode.
    mode: Literal["polling", "webhook"] = "polling"
    # Webhook mode: where this replica listens, and the public HTTPS URL that
    # Telegram posts to (the load balancer's). Only webhook_path is served
    # there; /metrics and /healthz are on [observability] http_host/http_port.
    webhook_host: str = "0.0.0.0"
    webhook_port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 8080
    webhook_path: Annotated[str, msgspec.Meta(pattern=r"^/[A-Za-z0-9_./-]*$")] = "/telegram"
    webhook_url: str = ""
    # How many webhook requests Telegram keeps open at once (1-100; Telegram's
    # default is 40). The fleet's throughput is at most this over the time a
    # request takes (an update's handling, its Bot API round trips included):
    # see docs/scaling.md.
    webhook_max_connections: Annotated[int, msgspec.Meta(ge=1, le=100)] = 100
    # Telegram sends it in X-Telegram-Bot-Api-Secret-Token (A-Z a-z 0-9 _ -);
    # every replica needs the same one. Empty: derived from the token.
    webhook_secret: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{0,256}$")] = ""

    def __post_init__(self) -> None:
        if self.mode == "webhook" and self.token and not self.webhook_url:
            raise ValueError("webhook_url: required in webhook mode (the public HTTPS URL)")


class RuntimeSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    # Bring the database to the migration head before serving.
    migrate_on_start: bool = True
    # Webhook mode: this many worker processes serve the one webhook port
    # (SO_REUSEPORT), each a replica of its own (bot/runtime/workers.py).
    workers: Annotated[int, msgspec.Meta(ge=1, le=64)] = 1
    # Set by `run` for each of its workers (1..workers); 0 in any other process.
    worker: Annotated[int, msgspec.Meta(ge=0, le=64)] = 0
    # Start-up waits for Postgres and Redis this many times, backing off up to
    # connect_backoff_max_seconds between attempts, then gives up.
    connect_attempts: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 10
    connect_backoff_max_seconds: Annotated[float, msgspec.Meta(gt=0, le=60)] = 5.0
    # Background jobs (deal expiry) tick this often; one replica per tick runs them.
    jobs_interval_seconds: Annotated[float, msgspec.Meta(gt=0, le=86_400)] = 30.0
    # Parties who must still accept or fund a deal are reminded once this long
    # before its deadline (0: no reminders).
    reminder_before_hours: Annotated[float, msgspec.Meta(ge=0, le=24 * 30)] = 12.0
    # A withdrawal no admin decided within this is rejected and the amount
    # returned to the user's available funds (0: wait for an admin forever).
    withdrawal_timeout_hours: Annotated[float, msgspec.Meta(ge=0, le=24 * 365)] = 72.0
    # Updates handled at once, per replica (0: [database] pool_size + max_overflow,
    # as many as can hold a connection). Polling takes no more from Telegram until
    # one finishes; the webhook answers 503 with Retry-After beyond it and Telegram
    # delivers the update again later.
    max_updates_in_flight: Annotated[int, msgspec.Meta(ge=0, le=10_000)] = 0
    # Webhook mode: a redelivered update_id is dropped for this long after it
    # was handled.
    update_dedup_seconds: Annotated[int, msgspec.Meta(ge=1, le=7 * 86_400)] = 3600
    # Webhook mode: an update being handled holds a lease on its update_id and
    # on its user's lock for this long, renewed every third of it while the
    # update runs. A replica that dies (or can't reach Redis to let go) frees
    # both within this: Telegram's redelivery is handled, the user's next
    # update runs. A few times the longest update; never shorter than Redis's
    # command timeout.
    lease_seconds: Annotated[float, msgspec.Meta(ge=0.5, le=120)] = 5.0
    # On SIGTERM, in-flight updates get this long to finish.
    shutdown_timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=600)] = 30.0
    # A 429 from Telegram is retried after its retry_after, this many times at
    # most, and only when the wait is no longer than retry_after_max_seconds.
    retry_after_attempts: Annotated[int, msgspec.Meta(ge=0, le=10)] = 3
    retry_after_max_seconds: Annotated[float, msgspec.Meta(ge=0, le=600)] = 60.0
    # A 5xx from Telegram is retried this many times (0: never), the first after
    # server_error_wait_seconds, doubling; a press's answer never is.
    server_error_attempts: Annotated[int, msgspec.Meta(ge=0, le=10)] = 3
    server_error_wait_seconds: Annotated[float, msgspec.Meta(ge=0, le=60)] = 0.5
    # What the bot sends on its own (notifications, reminders) is paced within
    # this many per second overall and chat_send_per_second in one chat (bursts
    # of chat_send_burst): the fleet's budgets in webhook mode (in Redis, see
    # bot/runtime/shared_pace.py); replies to a user's own update are not.
    send_per_second: Annotated[float, msgspec.Meta(gt=0, le=1000)] = 25.0
    chat_send_per_second: Annotated[float, msgspec.Meta(gt=0, le=100)] = 1.0
    chat_send_burst: Annotated[int, msgspec.Meta(ge=1, le=100)] = 5
    # A notification sent while handling an update (the other party's) waits
    # at most this long for that budget; past it the outbox worker sends it
    # (due at once), so the user's update is not held up by a burst.
    send_wait_in_update_seconds: Annotated[float, msgspec.Meta(ge=0, le=60)] = 1.0
    # Notifications (the outbox): the handler sends one itself at once; one still
    # unsent after outbox_grace_seconds is the worker's, which polls every
    # outbox_interval_seconds and retries with a backoff from outbox_retry_seconds
    # doubling up to outbox_retry_max_seconds, outbox_attempts times at most.
    outbox_grace_seconds: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 30.0
    outbox_interval_seconds: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 1.0
    outbox_retry_seconds: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 10.0
    outbox_retry_max_seconds: Annotated[float, msgspec.Meta(gt=0, le=86_400)] = 3600.0
    outbox_attempts: Annotated[int, msgspec.Meta(ge=1, le=100)] = 12
    # A claimed batch is the worker's for this long (sends are paced: up to
    # ~100 s for a batch of 100 to one chat); a worker that dies mid-batch
    # leaves its rows to be tried again after it. The worker sends for half of
    # it at most and hands back what is left, so no row is sent by two.
    outbox_lease_seconds: Annotated[float, msgspec.Meta(gt=0, le=86_400)] = 300.0
    # Sent and given-up notifications are deleted this long after they were
    # written (0: kept forever); pending ones never are.
    outbox_keep_days: Annotated[float, msgspec.Meta(ge=0, le=3650)] = 30.0
    # Local mode (no token): the simulated admin who settles the dispute.
    local_admin_id: Annotated[int, msgspec.Meta(ge=1)] = 900_000_001
    # No [database] url and no [redis] url: embedded servers keep their data here.
    embedded_data_dir: str = ".local/embedded"

    def __post_init__(self) -> None:
        # The worker records what handlers sent once per tick: a grace shorter
        # than two ticks would let it send those again.
        if self.outbox_grace_seconds < 2 * self.outbox_interval_seconds:
            raise ValueError("outbox_grace_seconds must be at least twice outbox_interval_seconds")


class PaymentsSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    # Where self-service deposits come from. "none": the wallet offers none and
    # says how to get funds (an admin's manual credit). "cryptopay": invoices of
    # Crypto Pay (@CryptoBot's payment API). "demo": any amount is credited on
    # request (play money); with a Telegram token it is refused at start-up
    # unless allow_demo = true. Local mode (no token) always uses demo.
    provider: Literal["none", "demo", "cryptopay"] = "none"
    # Run "demo" with a real token anyway: logged loudly at start, and the
    # wallet and deposit screens say the balances are play money.
    allow_demo: bool = False
    # Crypto Pay: the API (mainnet; testnet: https://testnet-pay.crypt.bot/api/;
    # or a local test server) and the app's token, kept out of the committed
    # file: set ESCROW__PAYMENTS__CRYPTOPAY_TOKEN.
    cryptopay_api_base: str = "https://pay.crypt.bot/api/"
    cryptopay_token: str = ""
    # Every Crypto Pay call gives up after this (its outcome is then unknown:
    # an invoice is not shown, a payout is settled by the reconciler).
    cryptopay_timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=120)] = 10.0
    # How long a deposit invoice can be paid.
    invoice_lifetime_seconds: Annotated[int, msgspec.Meta(ge=60, le=2_678_400)] = 3600
    # Webhook mode: Crypto Pay's webhook is served here on the webhook listener
    # (register <public base>/<this path> in @CryptoBot's app settings).
    cryptopay_webhook_path: Annotated[str, msgspec.Meta(pattern=r"^/[A-Za-z0-9_./-]*$")] = (
        "/cryptopay"
    )


class ObservabilitySettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    # An update slower than this is logged with its route, SQL and Redis counts.
    slow_update_ms: Annotated[float, msgspec.Meta(gt=0)] = 50.0
    # /metrics (Prometheus) and /healthz, in every mode, on an internal address
    # (in webhook mode not on the public webhook listener); 0 turns it off.
    http_host: str = "127.0.0.1"
    http_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 9100
    # "json": one JSON object per line (for a log shipper); "text": for people.
    log_format: Literal["json", "text"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class Config(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    database: DatabaseSettings = msgspec.field(default_factory=DatabaseSettings)
    redis: RedisSettings = msgspec.field(default_factory=RedisSettings)
    cache: CacheSettings = msgspec.field(default_factory=CacheSettings)
    telegram: TelegramSettings = msgspec.field(default_factory=TelegramSettings)
    escrow: EscrowSettings = msgspec.field(default_factory=EscrowSettings)
    observability: ObservabilitySettings = msgspec.field(default_factory=ObservabilitySettings)
    runtime: RuntimeSettings = msgspec.field(default_factory=RuntimeSettings)
    payments: PaymentsSettings = msgspec.field(default_factory=PaymentsSettings)
    currencies: dict[str, CurrencySettings] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.currencies:
            raise ValueError("at least one currency must be configured under [currencies.CODE]")
        for code in self.currencies:
            if not _CURRENCY_CODE.fullmatch(code):
                raise ValueError(f"currency code {code!r} must be 2-10 upper-case letters/digits")

    @property
    def max_updates_in_flight(self) -> int:
        """The bound on updates handled at once by one replica."""
        configured = self.runtime.max_updates_in_flight
        return configured or self.database.pool_size + self.database.max_overflow

    def currency_table(self) -> Currencies:
        return Currencies.from_settings(self.currencies)


class ConfigError(Exception):
    """A configuration that cannot be used; the message names the key."""


def _env_value(raw: str) -> Any:
    """A TOML literal where the text is one (42, true, [1, 2]), else the plain string."""
    try:
        return msgspec.toml.decode(f"v = {raw}".encode())["v"]
    except msgspec.DecodeError:
        return raw


def _apply_environment(data: dict[str, Any], environ: Mapping[str, str]) -> None:
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        path = name[len(ENV_PREFIX) :].split("__")
        if not all(path):
            raise ConfigError(f"{name}: malformed override name")
        # Section and key names are lower-case; currency codes are upper-case.
        keys = [
            part.upper() if index == 1 and path[0].lower() == "currencies" else part.lower()
            for index, part in enumerate(path)
        ]
        node = data
        for key in keys[:-1]:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{name}: {'.'.join(keys)} is not a section")
            node = child
        node[keys[-1]] = _env_value(raw)


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    return Path(environ.get(CONFIG_PATH_VARIABLE) or DEFAULT_PATH)


def load_config(path: Path | str | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Read config.toml (or `path`), apply environment overrides, validate."""
    environ = os.environ if environ is None else environ
    path = Path(path) if path is not None else config_path(environ)
    try:
        data = msgspec.toml.decode(path.read_bytes())
    except FileNotFoundError:
        raise ConfigError(f"{path}: configuration file not found") from None
    except msgspec.DecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    _apply_environment(data, environ)
    currencies = data.get("currencies")
    if isinstance(currencies, dict):
        # Converted one by one so that an error names the currency's code.
        data["currencies"] = {
            code: _convert(settings, CurrencySettings, path, f"currencies.{code}")
            for code, settings in currencies.items()
        }
    return _convert(data, Config, path, "")


def _convert(data: Any, kind: type[Any], path: Path, prefix: str) -> Any:
    try:
        return msgspec.convert(data, kind, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{path}: {_name_the_key(str(exc), prefix)}") from None


def _name_the_key(message: str, prefix: str) -> str:
    """'Expected `int`, got `str` - at `$.cache.l1_size`' → 'cache.l1_size: Expected ...'"""
    text, sep, where = message.rpartition(" - at `$")
    if not sep:
        text, where = message, ""
    parts = [prefix, where.rstrip("`").lstrip(".")]
    unknown = re.fullmatch(r"Object contains unknown field `(.+)`", text)
    if unknown:
        parts.append(unknown.group(1))
        text = "unknown key"
    field = re.fullmatch(r"([a-z_]+): (.+)", text)  # raised by a struct's own check
    if field:
        parts.append(field.group(1))
        text = field.group(2)
    key = ".".join(part for part in parts if part)
    if not key:
        return text
    env = ENV_PREFIX + key.upper().replace(".", "__")
    return f"{key}: {text} (set in the file or by {env})"
