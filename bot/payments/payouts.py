"""Payouts through Crypto Pay's transfer: an approved withdrawal is sent to
its owner's @CryptoBot wallet (their Telegram id), with the withdrawal's id as
the transfer's spend id, so however often it is tried — a timeout, a retry,
two replicas — it is paid at most once (bot/services/payouts.py settles it).

Before anything is sent again, the reconciler asks Crypto Pay whether a
transfer with that spend id exists (getTransfers): found, the withdrawal is
paid; not found, it is sent (the spend id still guards it).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Protocol

from bot.payments.cryptopay.amounts import from_minor_units
from bot.payments.cryptopay.client import CryptoPayClient
from bot.payments.cryptopay.errors import CryptoPayError, CryptoPayUnavailable, ErrorName
from bot.services import Services
from bot.services.base import Actor
from bot.services.money import Currencies
from bot.services.views import WithdrawalView

if TYPE_CHECKING:
    from bot.runtime.notifier import Outbox

log = logging.getLogger(__name__)

PROVIDER = "cryptopay"


class Payouts(Protocol):
    """A provider that pays approved withdrawals itself."""

    name: str

    def destination(self, user: Actor) -> str: ...

    async def approve(self, admin: Actor, withdrawal_id: int) -> WithdrawalView: ...

    async def pay_unattended(self, withdrawal_id: int) -> WithdrawalView | None: ...

    async def pay(self, withdrawal: WithdrawalView) -> WithdrawalView | None: ...


def spend_id(withdrawal_id: int) -> str:
    return f"withdrawal-{withdrawal_id}"


class CryptoPayPayouts:
    name = PROVIDER

    def __init__(self, services: Services, client: CryptoPayClient, currencies: Currencies) -> None:
        self.services = services
        self.client = client
        self.currencies = currencies
        self.outbox: Outbox | None = None  # tells the owner (and admins) at once when set
        self.counts: dict[str, int] = {}

    async def _settle(
        self, withdrawal_id: int, transfer_id: int | None, failure: str | None
    ) -> WithdrawalView | None:
        outcome = await self.services.payouts.settle(
            withdrawal_id, transfer_id=transfer_id, failure=failure
        )
        if outcome.value is not None and self.outbox is not None:
            await self.outbox.send(outcome.notices, outcome.value)
        return outcome.value

    def _count(self, outcome: str) -> None:
        self.counts[outcome] = self.counts.get(outcome, 0) + 1

    def destination(self, user: Actor) -> str:
        return f"your @CryptoBot wallet (Telegram id {user.telegram_id})"

    async def approve(self, admin: Actor, withdrawal_id: int) -> WithdrawalView:
        return (await self.services.payouts.approve(admin, withdrawal_id, PROVIDER)).value

    async def pay_unattended(self, withdrawal_id: int) -> WithdrawalView | None:
        """A new withdrawal its currency lets be paid without an admin
        (`auto_payout_up_to`): approved and sent now; None if it is not one."""
        approved = (await self.services.payouts.approve_unattended(withdrawal_id, PROVIDER)).value
        if approved is None:
            return None
        return await self.pay(approved) or approved

    async def pay(self, withdrawal: WithdrawalView) -> WithdrawalView | None:
        """Send `withdrawal` (it is `sending`); what it is now, or None if the
        outcome is unknown (it stays `sending` for the reconciler)."""
        money = self.currencies[withdrawal.currency]
        assert withdrawal.telegram_id is not None
        try:
            transfer = await self.client.transfer(
                withdrawal.telegram_id,
                money.code,
                from_minor_units(withdrawal.amount, money.decimals),
                spend_id(withdrawal.id),
                comment=f"Withdrawal #{withdrawal.id}",
            )
        except CryptoPayUnavailable as exc:
            self._count("unknown")
            log.warning("withdrawal %d: transfer outcome unknown (%s)", withdrawal.id, exc)
            return None
        except CryptoPayError as exc:
            if exc.name == ErrorName.SPEND_ID_ALREADY_USED:  # sent before: find it
                return await self.settle_from_provider(withdrawal, send_if_missing=False)
            self._count("refused")
            log.error("withdrawal %d: Crypto Pay refused the transfer: %s", withdrawal.id, exc)
            return await self._settle(withdrawal.id, None, exc.name)
        self._count("paid")
        return await self._settle(withdrawal.id, transfer.transfer_id, None)

    async def settle_from_provider(
        self, withdrawal: WithdrawalView, *, send_if_missing: bool = True
    ) -> WithdrawalView | None:
        """Settle by what Crypto Pay knows of the spend id; send it if nothing."""
        found = await self.client.get_transfers(spend_id=spend_id(withdrawal.id))
        if found:
            self._count("paid")
            return await self._settle(withdrawal.id, found[0].transfer_id, None)
        if not send_if_missing:
            return None
        return await self.pay(withdrawal)

    async def reconcile(self, batch: int = 100, min_age: timedelta = timedelta(seconds=30)) -> int:
        """Every payout still `sending` (approved at least `min_age` ago): settled
        from Crypto Pay, or sent; the number settled now."""
        settled = 0
        after = 0
        while True:
            sending = await self.services.payouts.sending(PROVIDER, after, batch, min_age)
            if not sending:
                return settled
            after = sending[-1].id
            for withdrawal in sending:
                result = await self.settle_from_provider(withdrawal)
                settled += result is not None
            if len(sending) < batch:
                return settled
