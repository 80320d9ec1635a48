"""Payment rails: the outside services money comes in and goes out through."""

from bot.payments.cryptopay.amounts import InexactAmount, from_minor_units, to_minor_units
from bot.payments.cryptopay.client import MAINNET_URL, TESTNET_URL, CryptoPayClient
from bot.payments.cryptopay.errors import (
    CryptoPayError,
    CryptoPayException,
    CryptoPayUnavailable,
    ErrorName,
)
from bot.payments.cryptopay.results import (
    App,
    Balance,
    Invoice,
    InvoiceStatus,
    Transfer,
    WebhookUpdate,
)
from bot.payments.cryptopay.webhook import SIGNATURE_HEADER, parse_webhook_update, verify_signature

__all__ = [
    "MAINNET_URL",
    "SIGNATURE_HEADER",
    "TESTNET_URL",
    "App",
    "Balance",
    "CryptoPayClient",
    "CryptoPayError",
    "CryptoPayException",
    "CryptoPayUnavailable",
    "ErrorName",
    "InexactAmount",
    "Invoice",
    "InvoiceStatus",
    "Transfer",
    "WebhookUpdate",
    "from_minor_units",
    "parse_webhook_update",
    "to_minor_units",
    "verify_signature",
]
