"""What a funded deal's clocks say in notifications: the reminders before a
clock runs out (`DealTimers.clock_reminders` writes them), the automatic
release when the release clock does, and the seller's news of a refund past
the delivery deadline. The card's own lines are `texts.clock_lines`."""

from __future__ import annotations

from datetime import datetime
from html import escape

from bot.services.views import DealView
from bot.telegram.i18n import N_, _
from bot.telegram.moments import duration, when
from db.models import DealStatus

RELEASE_SOON = N_(
    "⏰ Reminder: the payment is released to the seller automatically in {left} (on {when}) "
    "unless you open a dispute. If all is well, you can release it now."
)
DELIVER_SOON = N_(
    "⏰ Reminder: mark the deal as delivered within {left} (by {when}); after that the "
    "buyer may cancel it and get a refund."
)
NOT_DELIVERED = N_(
    "⌛ {name} did not mark the deal as delivered by {when}. You may cancel it now and get "
    "your money back, or keep waiting."
)
AUTO_RELEASED = {
    "seller": N_(
        "⏱ The buyer neither released the payment nor opened a dispute by {when}: it was "
        "released to you automatically and is in your wallet."
    ),
    "buyer": N_(
        "⏱ You neither released the payment nor opened a dispute by {when}: it was "
        "released to the seller automatically."
    ),
}
REFUNDED_PAST_DEADLINE = N_(
    "↩️ {name} cancelled the deal: it was not marked as delivered by {when}, so the money "
    "went back to the buyer."
)


def reminder(deal: DealView, note: str, now: datetime) -> str | None:
    """A clock reminder's headline (its note: "<status>:<which>"), or None if it
    is no longer true (the deal moved on)."""
    status, _colon, which = note.partition(":")
    if deal.status != status:
        return None
    due = deal.release_due_at if status == DealStatus.DELIVERED else deal.deliver_due_at
    if due is None:
        return None
    if which == "overdue":
        name = escape(deal.seller_name or _("The seller"))
        return _(NOT_DELIVERED).format(name=name, when=when(due))
    if due <= now:  # sent late: the clock has run out meanwhile
        return None
    soon = RELEASE_SOON if status == DealStatus.DELIVERED else DELIVER_SOON
    return _(soon).format(left=duration(due - now), when=when(due))


def auto_released(deal: DealView, user_id: int | None) -> str:
    side = "seller" if user_id == deal.seller_id else "buyer"
    due = deal.release_due_at
    return _(AUTO_RELEASED[side]).format(when=when(due) if due else _("the deadline"))


def refunded_past_deadline(deal: DealView, name: str) -> str:
    due = deal.deliver_due_at
    return _(REFUNDED_PAST_DEADLINE).format(name=name, when=when(due) if due else _("the deadline"))
