"""A fake Crypto Pay server that tests start themselves, on a free local port.

It speaks the methods and formats of the real API (see the docstring of
``bot.payments.cryptopay``): ``POST|GET /api/<method>`` with the token in
``Crypto-Pay-API-Token``, parameters in the query string or a JSON or form
body, and ``{"ok": true, "result": ...}`` or ``{"ok": false, "error":
{"code": ..., "name": ...}}``. It keeps invoices (active, paid, expired),
transfers (one per ``spend_id``: a second is refused with
``SPEND_ID_ALREADY_USED``) and the app's balance per asset (transfers debit
it, ``INSUFFICIENT_FUNDS`` when short; paid invoices credit it).

The test plays the payer (:meth:`FakeCryptoPay.pay`, :meth:`expire`) and
Crypto Pay's webhook (:meth:`send_webhook`), and can make the next calls of a
method fail (:meth:`fail_next`): a 500, no answer at all, a body that is not
the API's JSON, or the work done and its answer lost; or give the next call
an answer of the test's making (:meth:`answer_next`). Every call is recorded.

Error names for mistakes in the input (``AMOUNT_INVALID`` and the like) are
this fake's own; UNAUTHORIZED, INSUFFICIENT_FUNDS and SPEND_ID_ALREADY_USED
are the ones Crypto Pay answers with.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import hmac
import itertools
import json
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import aiohttp
from aiohttp import web

from bot.payments.cryptopay.client import TOKEN_HEADER
from bot.payments.cryptopay.webhook import SIGNATURE_HEADER

TOKEN = "12345:FAKE-crypto-pay-token"
ASSETS = ("USDT", "TON", "BTC", "ETH", "LTC", "BNB", "TRX", "USDC")


class Fault(enum.StrEnum):
    ERROR_500 = "500"  # a server error page; nothing done
    HANG = "hang"  # no answer until the client has given up; nothing done
    MALFORMED = "malformed"  # 200 with a body that is not the API's JSON; nothing done
    LOST_ANSWER = "lost"  # the work is done, then no answer: the client cannot know


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    fault: Fault | None


class Refusal(Exception):
    def __init__(self, name: str, code: int = 400) -> None:
        super().__init__(name)
        self.name = name
        self.code = code


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def api_amount(value: Decimal) -> str:
    return format(value.normalize(), "f")


class FakeCryptoPay:
    def __init__(
        self,
        token: str = TOKEN,
        *,
        balances: Mapping[str, Decimal | str] | None = None,
        hang_seconds: float = 30.0,
    ) -> None:
        self.token = token
        self.hang_seconds = hang_seconds
        self.balances: dict[str, Decimal] = {asset: Decimal(0) for asset in ASSETS}
        for asset, amount in (balances or {}).items():
            self.balances[asset] = Decimal(amount)
        self.invoices: dict[int, dict[str, Any]] = {}
        self.transfers: list[dict[str, Any]] = []
        self.calls: list[Call] = []
        self.webhooks: list[tuple[str, bytes, int]] = []  # url, body, status answered
        self._faults: dict[str, deque[Fault]] = {}
        self._canned: dict[str, deque[tuple[int, bytes]]] = {}
        self._invoice_ids = itertools.count(1001)
        self._transfer_ids = itertools.count(5001)
        self._update_ids = itertools.count(1)
        self._stopping = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.base_url = ""
        self._methods = {
            "getMe": self._get_me,
            "createInvoice": self._create_invoice,
            "getInvoices": self._get_invoices,
            "transfer": self._transfer,
            "getTransfers": self._get_transfers,
            "getBalance": self._get_balance,
        }

    # -- lifecycle --------------------------------------------------------------

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._handle)
        # A short shutdown: hanging handlers are released by stop() anyway.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}/api/"
        return self.base_url

    async def stop(self) -> None:
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeCryptoPay:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- what the test does -----------------------------------------------------

    def fail_next(self, method: str, fault: Fault, times: int = 1) -> None:
        self._faults.setdefault(method, deque()).extend([fault] * times)

    def answer_next(self, method: str, status: int, body: bytes) -> None:
        """The next call of ``method`` gets this answer, whatever it asked."""
        self._canned.setdefault(method, deque()).append((status, body))

    def calls_to(self, method: str) -> list[Call]:
        return [call for call in self.calls if call.method == method]

    def balance(self, asset: str) -> Decimal:
        return self.balances.get(asset, Decimal(0))

    def set_balance(self, asset: str, amount: Decimal | str) -> None:
        self.balances[asset] = Decimal(amount)

    def pay(
        self,
        invoice_id: int,
        asset: str | None = None,
        amount: Decimal | str | None = None,
        fee: Decimal | str = "0",
    ) -> dict[str, Any]:
        """The payer pays an active invoice (by default in its asset and amount);
        Crypto Pay keeps `fee` of it (the app's balance grows by the rest)."""
        invoice = self.invoices[invoice_id]
        if invoice["status"] != "active":
            raise ValueError(f"invoice {invoice_id} is {invoice['status']}")
        paid_asset = asset or invoice["asset"]
        paid_amount = Decimal(amount) if amount is not None else Decimal(invoice["amount"])
        invoice.update(
            status="paid",
            paid_at=iso(datetime.now(UTC)),
            paid_asset=paid_asset,
            paid_amount=api_amount(paid_amount),
            paid_anonymously=False,
            fee_asset=paid_asset,
            fee_amount=api_amount(Decimal(fee)),
        )
        self.balances[paid_asset] = self.balance(paid_asset) + paid_amount - Decimal(fee)
        return dict(invoice)

    def expire(self, invoice_id: int) -> None:
        invoice = self.invoices[invoice_id]
        if invoice["status"] != "active":
            raise ValueError(f"invoice {invoice_id} is {invoice['status']}")
        invoice["status"] = "expired"

    async def send_webhook(self, url: str, invoice_id: int, signature: str | None = None) -> int:
        """POST an ``invoice_paid`` update for the invoice, as Crypto Pay does.

        ``signature``: None signs it rightly, "bad" with another key,
        "missing" sends no signature. Returns the HTTP status answered.
        """
        update = {
            "update_id": next(self._update_ids),
            "update_type": "invoice_paid",
            "request_date": iso(datetime.now(UTC)),
            "payload": self.invoices[invoice_id],
        }
        body = json.dumps(update, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json"}
        if signature is None:
            headers[SIGNATURE_HEADER] = sign(self.token, body)
        elif signature == "bad":
            headers[SIGNATURE_HEADER] = sign(self.token + "-forged", body)
        elif signature != "missing":
            headers[SIGNATURE_HEADER] = signature
        async with (
            aiohttp.ClientSession() as session,
            session.post(url, data=body, headers=headers) as response,
        ):
            await response.read()
            self.webhooks.append((url, body, response.status))
            return response.status

    # -- the API ----------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        params = await _params(request)
        queued = self._faults.get(method)
        fault = queued.popleft() if queued else None
        self.calls.append(Call(method, params, fault))
        canned = self._canned.get(method)
        if fault is None and canned:
            status, body = canned.popleft()
            return web.Response(status=status, body=body, content_type="application/json")
        if fault is Fault.ERROR_500:
            return web.Response(status=500, text="500 Internal Server Error")
        if fault is Fault.HANG:
            return await self._hang()
        if fault is Fault.MALFORMED:
            return web.Response(status=200, text="<html>upstream error</html>")
        if request.headers.get(TOKEN_HEADER) != self.token:
            return _refused(Refusal("UNAUTHORIZED", 401))
        handler = self._methods.get(method)
        if handler is None:
            return _refused(Refusal("METHOD_NOT_FOUND", 405))
        try:
            result = handler(params)
        except Refusal as refusal:
            return _refused(refusal)
        if fault is Fault.LOST_ANSWER:
            return await self._hang()
        return web.json_response({"ok": True, "result": result})

    async def _hang(self) -> web.Response:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), self.hang_seconds)
        return web.Response(status=504, text="gave up")

    def _get_me(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "app_id": 4242,
            "name": "Escrow (fake)",
            "payment_processing_bot_username": "CryptoTestnetBot",
        }

    def _create_invoice(self, params: dict[str, Any]) -> dict[str, Any]:
        asset = self._asset(params.get("asset"))
        amount = _positive_amount(params.get("amount"))
        expires_in = params.get("expires_in")
        payload = params.get("payload")
        description = params.get("description")
        if payload is not None and len(str(payload).encode()) > 4096:
            raise Refusal("PAYLOAD_TOO_LONG")
        if description is not None and len(str(description)) > 1024:
            raise Refusal("DESCRIPTION_TOO_LONG")
        invoice_id = next(self._invoice_ids)
        code = f"IV{invoice_id}"
        now = datetime.now(UTC)
        invoice: dict[str, Any] = {
            "invoice_id": invoice_id,
            "hash": code,
            "currency_type": "crypto",
            "asset": asset,
            "amount": api_amount(amount),
            "pay_url": f"https://t.me/CryptoTestnetBot?start={code}",
            "bot_invoice_url": f"https://t.me/CryptoTestnetBot?start={code}",
            "mini_app_invoice_url": f"https://t.me/CryptoTestnetBot/app?startapp=invoice-{code}",
            "web_app_invoice_url": f"https://testnet-app.send.tg/invoices/{code}",
            "status": "active",
            "created_at": iso(now),
            "allow_comments": _flag(params.get("allow_comments"), True),
            "allow_anonymous": _flag(params.get("allow_anonymous"), True),
        }
        if expires_in is not None:
            seconds = _int(expires_in, "EXPIRES_IN_INVALID")
            if not 1 <= seconds <= 2_678_400:
                raise Refusal("EXPIRES_IN_INVALID")
            invoice["expiration_date"] = iso(now + timedelta(seconds=seconds))
        if description is not None:
            invoice["description"] = str(description)
        if payload is not None:
            invoice["payload"] = str(payload)
        self.invoices[invoice_id] = invoice
        return invoice

    def _get_invoices(self, params: dict[str, Any]) -> dict[str, Any]:
        ids = _ids(params.get("invoice_ids"))
        items = [
            invoice
            for invoice in self.invoices.values()
            if (ids is None or invoice["invoice_id"] in ids)
            and params.get("status") in (None, invoice["status"])
            and params.get("asset") in (None, invoice["asset"])
        ]
        return {"items": _page(items, params)}

    def _transfer(self, params: dict[str, Any]) -> dict[str, Any]:
        user_id = _int(params.get("user_id"), "USER_ID_INVALID")
        asset = self._asset(params.get("asset"))
        amount = _positive_amount(params.get("amount"))
        spend_id = params.get("spend_id")
        comment = params.get("comment")
        if not spend_id or len(str(spend_id)) > 64:
            raise Refusal("SPEND_ID_INVALID")
        if comment is not None and len(str(comment)) > 1024:
            raise Refusal("COMMENT_TOO_LONG")
        if any(transfer["spend_id"] == str(spend_id) for transfer in self.transfers):
            raise Refusal("SPEND_ID_ALREADY_USED")
        if self.balance(asset) < amount:
            raise Refusal("INSUFFICIENT_FUNDS")
        self.balances[asset] = self.balance(asset) - amount
        transfer: dict[str, Any] = {
            "transfer_id": next(self._transfer_ids),
            "spend_id": str(spend_id),
            "user_id": user_id,
            "asset": asset,
            "amount": api_amount(amount),
            "status": "completed",
            "completed_at": iso(datetime.now(UTC)),
        }
        if comment is not None:
            transfer["comment"] = str(comment)
        self.transfers.append(transfer)
        return transfer

    def _get_transfers(self, params: dict[str, Any]) -> dict[str, Any]:
        ids = _ids(params.get("transfer_ids"))
        spend_id = params.get("spend_id")
        items = [
            transfer
            for transfer in self.transfers
            if (ids is None or transfer["transfer_id"] in ids)
            and (spend_id is None or transfer["spend_id"] == str(spend_id))
            and params.get("asset") in (None, transfer["asset"])
        ]
        return {"items": _page(items, params)}

    def _get_balance(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            {"currency_code": asset, "available": api_amount(amount), "onhold": "0"}
            for asset, amount in self.balances.items()
        ]

    def _asset(self, value: Any) -> str:
        if value not in self.balances:
            raise Refusal("ASSET_INVALID")
        return str(value)


def sign(token: str, body: bytes) -> str:
    secret = hashlib.sha256(token.encode()).digest()
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


async def _params(request: web.Request) -> dict[str, Any]:
    params: dict[str, Any] = dict(request.query)
    if request.can_read_body:
        if request.content_type == "application/json":
            body = await request.json()
            if isinstance(body, dict):
                params.update(body)
        else:
            params.update(await request.post())
    return params


def _refused(refusal: Refusal) -> web.Response:
    body = {"ok": False, "error": {"code": refusal.code, "name": refusal.name}}
    return web.json_response(body, status=refusal.code)


def _positive_amount(value: Any) -> Decimal:
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise Refusal("AMOUNT_INVALID") from None
    if not amount.is_finite() or amount <= 0:
        raise Refusal("AMOUNT_INVALID")
    return amount


def _int(value: Any, error: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise Refusal(error) from None


def _flag(value: Any, default: bool) -> bool:
    if value is None:
        return default
    return value is True or str(value).lower() == "true"


def _ids(value: Any) -> set[int] | None:
    if value in (None, ""):
        return None
    parts = value if isinstance(value, list) else str(value).split(",")
    return {_int(part, "IDS_INVALID") for part in parts}


def _page(items: list[dict[str, Any]], params: dict[str, Any]) -> list[dict[str, Any]]:
    offset = _int(params.get("offset", 0), "OFFSET_INVALID")
    count = _int(params.get("count", 100), "COUNT_INVALID")
    if not 1 <= count <= 1000:
        raise Refusal("COUNT_INVALID")
    return items[offset : offset + count]
