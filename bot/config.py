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


class ObservabilitySettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    # An update slower than this is logged with its route, SQL and Redis counts.
    slow_update_ms: Annotated[float, msgspec.Meta(gt=0)] = 50.0
    # /metrics (Prometheus) and /healthz; 0 turns the side server off.
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
    currencies: dict[str, CurrencySettings] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.currencies:
            raise ValueError("at least one currency must be configured under [currencies.CODE]")
        for code in self.currencies:
            if not _CURRENCY_CODE.fullmatch(code):
                raise ValueError(f"currency code {code!r} must be 2-10 upper-case letters/digits")

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
