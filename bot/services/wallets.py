"""Wallets: deposits credited (by an admin, a provider or play money) and the
deposit providers' seam; withdrawals are in `bot.services.withdrawals`."""

from __future__ import annotations

from typing import Protocol

import msgspec

from bot.services.base import Actor, Outcome
from bot.services.deals import bounded_text
from bot.services.errors import (
    NotAllowed,
    NotFound,
    Refusal,
)
from bot.services.ledger import DuplicateMovement, Leg, post_movement
from bot.services.withdrawals import MAX_REFERENCE, WithdrawalRequests
from db import UnitOfWork
from db.models import LedgerAccount, LedgerKind, UserStatus
from db.sql.users import USER_BY_TELEGRAM_ID, USER_STANDING


class Deposit(msgspec.Struct, frozen=True):
    telegram_id: int
    currency: str
    amount: int
    reference: str
    credited: bool  # False: this reference was credited before; nothing changed now


class DepositProvider(Protocol):
    """Where deposits come from. A real provider (a payment processor, a chain
    watcher) calls `WalletService.credit_deposit` once per confirmed payment,
    with its own reference as the idempotency key."""

    # Also what the wallet's deposit screen explains (`bot/telegram/texts.py`).
    name: str
    # Balances raised through it are not real money (the wallet says so).
    play_money: bool


class AdminCreditsOnly:
    """No self-service deposits: funds arrive by an admin's manual credit."""

    name = "none"
    play_money = False


class DemoDepositProvider:
    """Local and demo use: the user asks for an amount and it is credited at once."""

    name = "demo"
    instant = True
    play_money = True

    def __init__(self, wallets: WalletService) -> None:
        self.wallets = wallets

    async def deposit(
        self, user: Actor, currency: str, amount: int, reference: str
    ) -> Outcome[Deposit]:
        return await self.wallets.credit_deposit(
            user, currency, amount, reference=f"{self.name}:{reference}"
        )


class WalletService(WithdrawalRequests):
    """Money entering (deposits credited) and, through `WithdrawalRequests`,
    leaving (withdrawals requested and decided)."""

    async def credit_deposit(
        self, user: Actor, currency: str, amount: int, *, reference: str
    ) -> Outcome[Deposit]:
        """Credit a confirmed deposit once per `reference`; a repeat changes nothing."""
        money = self._amount(currency, amount)
        reference = bounded_text(reference, MAX_REFERENCE, "reference")

        async def work(uow: UnitOfWork) -> Deposit:
            await post_movement(
                uow,
                key=f"deposit:{reference}",
                currency=money.code,
                legs=[
                    Leg(LedgerKind.DEPOSIT, LedgerAccount.EXTERNAL, -amount),
                    Leg(LedgerKind.DEPOSIT, LedgerAccount.AVAILABLE, amount, user.id),
                ],
            )
            return Deposit(user.telegram_id, money.code, amount, reference, credited=True)

        try:
            return await self.transaction(work)
        except DuplicateMovement:
            return Outcome(Deposit(user.telegram_id, money.code, amount, reference, False))

    async def admin_credit(
        self, admin: Actor, telegram_id: int, currency: str, amount: int, *, reference: str
    ) -> Outcome[Deposit]:
        """An admin credits a user's deposit by hand (e.g. a bank transfer)."""
        money = self._amount(currency, amount)
        reference = bounded_text(reference, MAX_REFERENCE, "reference")

        async def work(uow: UnitOfWork) -> Deposit:
            standing = (await uow.execute(USER_STANDING, {"user_id": admin.id})).first()
            if standing is None or not standing.is_admin or standing.status != UserStatus.ACTIVE:
                raise NotAllowed(Refusal.ADMIN_CREDITS_DEPOSITS)
            target = (await uow.execute(USER_BY_TELEGRAM_ID, {"telegram_id": telegram_id})).first()
            if target is None:
                raise NotFound(Refusal.NO_SUCH_USER)
            await post_movement(
                uow,
                key=f"deposit:admin:{reference}",
                currency=money.code,
                legs=[
                    Leg(LedgerKind.DEPOSIT, LedgerAccount.EXTERNAL, -amount),
                    Leg(LedgerKind.DEPOSIT, LedgerAccount.AVAILABLE, amount, target.id),
                ],
            )
            return Deposit(telegram_id, money.code, amount, reference, credited=True)

        try:
            return await self.transaction(work)
        except DuplicateMovement:
            return Outcome(Deposit(telegram_id, money.code, amount, reference, False))
