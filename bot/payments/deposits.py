"""Deposits through Crypto Pay invoices: the wallet's provider, the webhook's
and the reconciler's one way to settle an invoice (bot/services/deposits.py).

The user picks a currency and an amount; a deposit row is written, Crypto Pay
is asked for an invoice whose payload is the row's id, and the user gets its
payment link. When it is paid, either path credits it, once:

- Crypto Pay's webhook (`invoice_paid`, signed), on the replica's webhook
  listener (bot/runtime/webhook.py);
- the reconciler, once per jobs tick across replicas (bot/runtime/jobs.py), asking
  getInvoices about every invoice still open, so a lost or disabled webhook
  delays a credit but never loses it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from aiohttp import web

from bot.payments.cryptopay.amounts import InexactAmount, from_minor_units, to_minor_units
from bot.payments.cryptopay.client import CryptoPayClient
from bot.payments.cryptopay.errors import CryptoPayError, CryptoPayUnavailable
from bot.payments.cryptopay.results import Invoice
from bot.payments.cryptopay.webhook import SIGNATURE_HEADER, parse_webhook_update, verify_signature
from bot.services import Outcome, Services
from bot.services.base import Actor
from bot.services.deposits import DepositView, Payment, Settlement
from bot.services.errors import EscrowError, Refusal
from bot.services.money import Currencies

if TYPE_CHECKING:
    from bot.runtime.notifier import Outbox

log = logging.getLogger(__name__)

PROVIDER = "cryptopay"
# A row whose invoice was never confirmed created (the answer was lost) is
# closed after this: its invoice, if it exists, was never shown to anyone.
STUCK_CREATING = timedelta(minutes=10)


class InvoiceNotCreated(EscrowError):
    """Crypto Pay refused or did not answer: no invoice to pay, nothing charged."""


class CryptoPayDeposits:
    """The wallet's deposit provider for Crypto Pay (see the module docstring)."""

    name = PROVIDER
    play_money = False

    def __init__(
        self,
        services: Services,
        client: CryptoPayClient,
        token: str,
        currencies: Currencies,
        invoice_lifetime: timedelta,
    ) -> None:
        self.services = services
        self.client = client
        self._token = token  # the webhook's signature key
        self.currencies = currencies
        self.invoice_lifetime = invoice_lifetime
        self.outbox: Outbox | None = None  # tells owners and admins at once when set
        self.counts: dict[str, int] = {}

    def _count(self, outcome: str) -> None:
        self.counts[outcome] = self.counts.get(outcome, 0) + 1

    async def invoice(
        self,
        user: Actor,
        currency: str,
        amount: int,
        describe: Callable[[int], str] | None = None,
    ) -> DepositView:
        """A new invoice for `amount`; its row is active once Crypto Pay made it.
        `describe`: what @CryptoBot shows the payer, from the deposit's number
        (the Telegram face words it in the user's language)."""
        money = self.currencies[currency]
        deposit = await self.services.deposits.open(user, money.code, amount, PROVIDER)
        try:
            invoice = await self.client.create_invoice(
                money.code,
                from_minor_units(amount, money.decimals),
                payload=str(deposit.id),
                expires_in=max(int(self.invoice_lifetime.total_seconds()), 60),
                description=describe(deposit.id) if describe else f"#{deposit.id}",
            )
        except (CryptoPayError, CryptoPayUnavailable) as exc:
            # Unknown outcome included: an invoice nobody was shown can't be paid.
            await self.services.deposits.abandon(deposit.id)
            self._count("invoice_failed")
            log.warning("deposit %d: no invoice (%s)", deposit.id, exc)
            raise InvoiceNotCreated(Refusal.INVOICE_NOT_CREATED) from exc
        url = invoice.url or ""
        active = await self.services.deposits.activate(
            deposit.id, invoice.invoice_id, url, invoice.expiration_date
        )
        self._count("invoice_created")
        return active or deposit

    def payment(self, invoice: Invoice) -> Payment:
        """What `invoice` says was paid, in our minor units where it can be."""
        asset = invoice.paid_asset or invoice.asset
        reported = invoice.paid_amount if invoice.paid_amount is not None else invoice.amount
        amount: int | None = None
        fee: int | None = 0
        if asset in self.currencies.codes:
            decimals = self.currencies[asset].decimals
            try:
                amount = to_minor_units(reported, decimals)
            except InexactAmount:
                amount = None  # finer than the currency: can't be what was invoiced
            if invoice.fee_amount:
                try:
                    same = (invoice.fee_asset or asset) == asset
                    fee = to_minor_units(invoice.fee_amount, decimals) if same else None
                except InexactAmount:
                    fee = None
        return Payment(invoice.invoice_id, invoice.status, asset, amount, str(reported), fee)

    async def webhook(self, raw_body: bytes, signature: str | None) -> int:
        """Crypto Pay's webhook request: the HTTP status to answer. The signature
        is checked before anything is parsed; an invoice that is not ours is
        acknowledged (and logged) so Crypto Pay stops sending it."""
        if not verify_signature(self._token, raw_body, signature):
            self._count("webhook_refused")
            log.warning("Crypto Pay webhook refused: bad or missing %s", SIGNATURE_HEADER)
            return 401
        try:
            update = parse_webhook_update(raw_body)
        except ValueError as exc:
            self._count("webhook_malformed")
            log.warning("Crypto Pay webhook refused: %s", exc)
            return 400
        if update.update_type != "invoice_paid":
            return 200
        await self.settle(update.payload)
        return 200

    async def settle(self, invoice: Invoice) -> Outcome[Settlement]:
        """Settle the deposit behind `invoice` (webhook or reconciler), once."""
        outcome = await self.services.deposits.settle(PROVIDER, self.payment(invoice))
        settlement = outcome.value
        if self.outbox is not None and settlement.outcome == "credited" and settlement.deposit:
            # the owner at once; a mismatch's alert names the payer, which the
            # outbox worker reads (after the grace)
            await self.outbox.send(outcome.notices, settlement.deposit)
        self._count(settlement.outcome)
        if settlement.outcome == "unknown":
            log.warning("Crypto Pay invoice %d is not one of ours: ignored", invoice.invoice_id)
        elif settlement.outcome == "mismatched":
            log.error(
                "deposit %s: invoice %d paid as %s %s, not as invoiced: not credited",
                settlement.deposit.id if settlement.deposit else "?",
                invoice.invoice_id,
                invoice.paid_amount,
                invoice.paid_asset,
            )
        elif settlement.outcome == "credited":
            log.info("deposit %s credited", settlement.deposit.id if settlement.deposit else "?")
        return outcome

    async def reconcile(self, batch: int = 100) -> list[Outcome[Settlement]]:
        """Ask Crypto Pay about every invoice still open here and settle what
        it reports paid or expired; close rows whose invoice was never made."""
        settled: list[Outcome[Settlement]] = []
        after = 0
        while True:
            open_ones = await self.services.deposits.unsettled(PROVIDER, after, batch)
            if not open_ones:
                return settled
            after = open_ones[-1].id
            invoiced = {d.invoice_id: d for d in open_ones if d.invoice_id is not None}
            for deposit in open_ones:
                if deposit.invoice_id is None and _older_than(deposit, STUCK_CREATING):
                    await self.services.deposits.abandon(deposit.id)
            if invoiced:
                invoices = await self.client.get_invoices(invoice_ids=sorted(invoiced))
                for invoice in invoices:
                    if invoice.status in ("paid", "expired"):
                        settled.append(await self.settle(invoice))
            if len(open_ones) < batch:
                return settled


def webhook_handler(
    deposits: CryptoPayDeposits,
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The aiohttp handler of Crypto Pay's webhook (its own path on the webhook
    listener, bot/runtime/webhook.py): the raw body and signature to `deposits.webhook`."""

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        status = await deposits.webhook(body, request.headers.get(SIGNATURE_HEADER))
        return web.Response(status=status)

    return handle


def _older_than(deposit: DepositView, age: timedelta) -> bool:
    return deposit.created_at is not None and datetime.now(UTC) - deposit.created_at > age
