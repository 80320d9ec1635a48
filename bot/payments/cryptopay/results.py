"""What Crypto Pay answers with, as typed frozen structs (amounts stay `Decimal`)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import msgspec


class InvoiceStatus:
    ACTIVE = "active"
    PAID = "paid"
    EXPIRED = "expired"


class App(msgspec.Struct, frozen=True):
    app_id: int
    name: str
    payment_processing_bot_username: str = ""


class Invoice(msgspec.Struct, frozen=True):
    invoice_id: int
    status: str
    amount: Decimal
    hash: str = ""
    currency_type: str = "crypto"
    asset: str | None = None
    fiat: str | None = None
    description: str | None = None
    payload: str | None = None
    bot_invoice_url: str | None = None
    pay_url: str | None = None  # the older name of bot_invoice_url
    mini_app_invoice_url: str | None = None
    web_app_invoice_url: str | None = None
    allow_comments: bool | None = None
    allow_anonymous: bool | None = None
    created_at: datetime | None = None
    expiration_date: datetime | None = None
    paid_at: datetime | None = None
    paid_asset: str | None = None
    paid_amount: Decimal | None = None
    paid_anonymously: bool | None = None
    paid_usd_rate: Decimal | None = None
    fee_asset: str | None = None
    fee_amount: Decimal | None = None
    comment: str | None = None

    @property
    def url(self) -> str | None:
        """Where the payer opens the invoice in @CryptoBot."""
        return self.bot_invoice_url or self.pay_url


class Transfer(msgspec.Struct, frozen=True):
    transfer_id: int
    user_id: int
    asset: str
    amount: Decimal
    status: str
    spend_id: str | None = None
    completed_at: datetime | None = None
    comment: str | None = None


class Balance(msgspec.Struct, frozen=True):
    currency_code: str
    available: Decimal
    onhold: Decimal = Decimal(0)


class WebhookUpdate(msgspec.Struct, frozen=True):
    update_id: int
    update_type: str  # "invoice_paid"
    request_date: datetime
    payload: Invoice
