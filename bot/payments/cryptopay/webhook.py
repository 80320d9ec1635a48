"""Crypto Pay's webhook: the signature of an update's raw body, and the update in it."""

from __future__ import annotations

import hashlib
import hmac

import msgspec

from bot.payments.cryptopay.results import WebhookUpdate

SIGNATURE_HEADER = "crypto-pay-api-signature"

_update_decoder = msgspec.json.Decoder(WebhookUpdate)


def verify_signature(token: str, raw_body: bytes, header_value: str | None) -> bool:
    """Whether ``header_value`` is Crypto Pay's signature of ``raw_body``."""
    if not header_value:
        return False
    secret = hashlib.sha256(token.encode()).digest()
    expected = hmac.new(secret, raw_body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), header_value.strip().lower().encode())


def parse_webhook_update(raw_body: bytes) -> WebhookUpdate:
    """The update in a webhook body (verify its signature first)."""
    try:
        return _update_decoder.decode(raw_body)
    except msgspec.DecodeError as exc:
        raise ValueError(f"not a Crypto Pay update: {exc}") from None
