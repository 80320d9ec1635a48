"""The Crypto Pay HTTP client: one long-lived aiohttp session, a typed request in and a
typed result out, every call bounded by a timeout, every failure mapped to one of the
two kinds in `bot.payments.cryptopay.errors`. It never retries; callers reconcile."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any, Generic, TypeVar

import aiohttp
import msgspec

from bot.payments.cryptopay.amounts import amount_param
from bot.payments.cryptopay.errors import CryptoPayError, CryptoPayUnavailable
from bot.payments.cryptopay.results import App, Balance, Invoice, Transfer

MAINNET_URL = "https://pay.crypt.bot/api/"
TESTNET_URL = "https://testnet-pay.crypt.bot/api/"
TOKEN_HEADER = "Crypto-Pay-API-Token"
# Crypto Pay accepts an invoice lifetime of 1 s to 31 days.
MAX_EXPIRES_IN = 2_678_400

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
            "amount": amount_param(amount),
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
            "amount": amount_param(amount),
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
