"""A thin async client for Crypto Pay, the payment API of @CryptoBot.

The contract this client relies on (https://help.crypt.bot/crypto-pay-api):

- Every method is ``https://pay.crypt.bot/api/<method>`` (testnet:
  ``https://testnet-pay.crypt.bot/api/<method>``), called here as a POST with
  a JSON body; the app's token travels in the ``Crypto-Pay-API-Token`` header.
- Every answer is JSON: ``{"ok": true, "result": ...}`` or
  ``{"ok": false, "error": {"code": 400, "name": "INSUFFICIENT_FUNDS"}}``.
- Amounts are decimal strings both ways (``"12.5"``). They stay ``Decimal``
  here and become integer minor units only through :func:`to_minor_units`.
- ``createInvoice`` (asset, amount, payload, expires_in, description) returns
  an Invoice whose ``status`` is ``active``, then ``paid`` or ``expired``; the
  payer may pay in another asset (``paid_asset``/``paid_amount``).
  ``getInvoices`` (invoice_ids comma-separated, status) answers
  ``{"items": [...]}``.
- ``transfer`` (user_id, asset, amount, spend_id, comment) sends coins from
  the app's balance to a Telegram user. ``spend_id`` makes it idempotent: a
  second transfer with a used ``spend_id`` is refused
  (``SPEND_ID_ALREADY_USED``), so a payout that may or may not have happened
  is resolved by ``getTransfers(spend_id=...)``, never by sending again with a
  new id. ``getBalance`` lists ``currency_code``/``available``/``onhold``.
- Webhooks: an ``invoice_paid`` update is POSTed with the header
  ``crypto-pay-api-signature``, the hex HMAC-SHA-256 of the raw body keyed
  with the SHA-256 digest of the app token (:func:`verify_signature`).

Failures come in two kinds, and callers must tell them apart:
:class:`CryptoPayError` is a definite refusal (Crypto Pay answered
``ok: false`` with a non-5xx status: nothing was done), and
:class:`CryptoPayUnavailable` means the outcome is unknown (timeout,
connection error, 5xx, an answer that is not the documented shape): a
transfer may have happened. The client never retries; callers reconcile.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal, InvalidOperation, localcontext
from typing import Any, Generic, TypeVar

import aiohttp
import msgspec

MAINNET_URL = "https://pay.crypt.bot/api/"
TESTNET_URL = "https://testnet-pay.crypt.bot/api/"
TOKEN_HEADER = "Crypto-Pay-API-Token"
SIGNATURE_HEADER = "crypto-pay-api-signature"
# Crypto Pay accepts an invoice lifetime of 1 s to 31 days.
MAX_EXPIRES_IN = 2_678_400


class InvoiceStatus:
    ACTIVE = "active"
    PAID = "paid"
    EXPIRED = "expired"


class ErrorName:
    """Error names Crypto Pay answers with that callers act on."""

    UNAUTHORIZED = "UNAUTHORIZED"
    INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"
    SPEND_ID_ALREADY_USED = "SPEND_ID_ALREADY_USED"


# -- errors ---------------------------------------------------------------------


class CryptoPayException(Exception):
    """Any failure of a Crypto Pay call."""

    def __init__(self, method: str, detail: str) -> None:
        super().__init__(f"{method}: {detail}")
        self.method = method


class CryptoPayError(CryptoPayException):
    """Crypto Pay refused the call (``ok: false``): nothing was done."""

    def __init__(self, method: str, code: int, name: str) -> None:
        super().__init__(method, f"[{code}] {name}")
        self.code = code
        self.name = name


class CryptoPayUnavailable(CryptoPayException):
    """The call's outcome is unknown: it may or may not have taken effect."""


class InexactAmount(ValueError):
    """An amount that integer minor units of the currency cannot hold."""


# -- results --------------------------------------------------------------------


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


# -- wire formats (decoders built once) -----------------------------------------

T = TypeVar("T")


class _Failure(msgspec.Struct):
    code: int = 0
    name: str = ""


class _Head(msgspec.Struct):
    ok: bool
    error: _Failure | None = None


class _Answer(msgspec.Struct, Generic[T]):
    result: T


class _Items(msgspec.Struct, Generic[T]):
    items: list[T]


_encoder = msgspec.json.Encoder()
# Lenient about a code sent as "400": the refusal must still be read as one.
_head_decoder = msgspec.json.Decoder(_Head, strict=False)
_app_decoder = msgspec.json.Decoder(_Answer[App])
_invoice_decoder = msgspec.json.Decoder(_Answer[Invoice])
_invoices_decoder = msgspec.json.Decoder(_Answer[_Items[Invoice]])
_transfer_decoder = msgspec.json.Decoder(_Answer[Transfer])
_transfers_decoder = msgspec.json.Decoder(_Answer[_Items[Transfer]])
_balances_decoder = msgspec.json.Decoder(_Answer[list[Balance]])
_update_decoder = msgspec.json.Decoder(WebhookUpdate)


# -- amounts --------------------------------------------------------------------


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


def _amount_param(amount: Decimal | str | int) -> str:
    value = _decimal(amount)
    if value <= 0:
        raise InexactAmount(f"an amount must be positive: {amount!r}")
    return format(value, "f")


# -- webhook --------------------------------------------------------------------


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


# -- client ---------------------------------------------------------------------


class CryptoPayClient:
    """One long-lived HTTP session; every call bounded by ``timeout`` seconds."""

    def __init__(
        self,
        token: str,
        *,
        base_url: str = MAINNET_URL,
        timeout: float = 10.0,
        connect_timeout: float = 5.0,
    ) -> None:
        self._headers = {TOKEN_HEADER: token, "Content-Type": "application/json"}
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.timeout = timeout
        self._timeout = aiohttp.ClientTimeout(total=timeout, connect=connect_timeout)
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        # The token stays out of reprs, and so out of logs and tracebacks.
        return f"CryptoPayClient(base_url={self.base_url!r}, timeout={self.timeout})"

    async def __aenter__(self) -> CryptoPayClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- methods ----------------------------------------------------------------

    async def get_me(self) -> App:
        return await self._call("getMe", {}, _app_decoder)

    async def create_invoice(
        self,
        asset: str,
        amount: Decimal | str | int,
        *,
        payload: str,
        expires_in: int,
        description: str | None = None,
    ) -> Invoice:
        if not 1 <= expires_in <= MAX_EXPIRES_IN:
            raise ValueError(f"expires_in must be 1..{MAX_EXPIRES_IN} seconds")
        params = {
            "asset": asset,
            "amount": _amount_param(amount),
            "payload": payload,
            "expires_in": expires_in,
            "description": description,
        }
        return await self._call("createInvoice", params, _invoice_decoder)

    async def get_invoices(
        self,
        *,
        invoice_ids: Sequence[int] | None = None,
        status: str | None = None,
        asset: str | None = None,
        offset: int | None = None,
        count: int | None = None,
    ) -> list[Invoice]:
        if invoice_ids is not None and not invoice_ids:
            return []  # an empty filter would list every invoice
        params = {
            "invoice_ids": _id_list(invoice_ids),
            "status": status,
            "asset": asset,
            "offset": offset,
            "count": count,
        }
        return (await self._call("getInvoices", params, _invoices_decoder)).items

    async def transfer(
        self,
        user_id: int,
        asset: str,
        amount: Decimal | str | int,
        spend_id: str,
        *,
        comment: str | None = None,
    ) -> Transfer:
        params = {
            "user_id": user_id,
            "asset": asset,
            "amount": _amount_param(amount),
            "spend_id": spend_id,
            "comment": comment,
        }
        return await self._call("transfer", params, _transfer_decoder)

    async def get_transfers(
        self,
        *,
        spend_id: str | None = None,
        transfer_ids: Sequence[int] | None = None,
        asset: str | None = None,
        offset: int | None = None,
        count: int | None = None,
    ) -> list[Transfer]:
        if transfer_ids is not None and not transfer_ids:
            return []  # an empty filter would list every transfer
        params = {
            "spend_id": spend_id,
            "transfer_ids": _id_list(transfer_ids),
            "asset": asset,
            "offset": offset,
            "count": count,
        }
        return (await self._call("getTransfers", params, _transfers_decoder)).items

    async def get_balance(self) -> list[Balance]:
        return await self._call("getBalance", {}, _balances_decoder)

    # -- transport --------------------------------------------------------------

    async def _call(self, method: str, params: dict[str, Any], decoder: Any) -> Any:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        body = _encoder.encode({k: v for k, v in params.items() if v is not None})
        try:
            async with self._session.post(
                self.base_url + method,
                data=body,
                headers=self._headers,
                timeout=self._timeout,
                allow_redirects=False,
            ) as response:
                status = response.status
                raw = await response.read()
        except TimeoutError as exc:
            raise CryptoPayUnavailable(method, "no answer in time") from exc
        except aiohttp.ClientError as exc:
            raise CryptoPayUnavailable(method, f"{type(exc).__name__}: {exc}") from exc
        return _interpret(method, status, raw, decoder)


def _interpret(method: str, status: int, raw: bytes, decoder: Any) -> Any:
    if status >= 500:
        raise CryptoPayUnavailable(method, f"HTTP {status}")
    try:
        head = _head_decoder.decode(raw)
    except msgspec.DecodeError:
        raise CryptoPayUnavailable(method, f"HTTP {status} with a malformed answer") from None
    if not head.ok:
        if head.error is None or not head.error.name:
            raise CryptoPayUnavailable(method, f"HTTP {status}: a refusal without an error")
        raise CryptoPayError(method, head.error.code or status, head.error.name)
    if status != 200:
        raise CryptoPayUnavailable(method, f"HTTP {status} with ok=true")
    try:
        return decoder.decode(raw).result
    except msgspec.DecodeError as exc:
        raise CryptoPayUnavailable(method, f"malformed result: {exc}") from None


def _id_list(ids: Sequence[int] | None) -> str | None:
    if ids is None:
        return None
    return ",".join(str(int(i)) for i in ids)
