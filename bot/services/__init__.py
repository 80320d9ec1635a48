"""The use cases, over a unit of work; no aiogram here."""

from bot.services.base import Outcome, ServiceContext
from bot.services.deals import DealService
from bot.services.deposits import DepositService
from bot.services.moderation import ModerationService
from bot.services.notifications import OutboxService
from bot.services.payouts import PayoutService
from bot.services.ratings import RatingService
from bot.services.reads import ReadService
from bot.services.users import UserService
from bot.services.wallets import WalletService


class Services:
    """Every use case, sharing one context (database, settings, event sink)."""

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.users = UserService(ctx)
        self.deals = DealService(ctx)
        self.wallets = WalletService(ctx)
        self.deposits = DepositService(ctx)
        self.payouts = PayoutService(ctx)
        self.reads = ReadService(ctx)
        self.outbox = OutboxService(ctx)
        self.moderation = ModerationService(ctx)
        self.ratings = RatingService(ctx)


__all__ = ["Outcome", "ServiceContext", "Services"]
