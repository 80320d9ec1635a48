"""What the bot says. HTML parse mode; every user-given string is escaped."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from html import escape

from bot.services.money import Currencies
from bot.services.ratings import Rating
from bot.services.views import DealView
from bot.telegram import reputation
from bot.telegram.statuses import card_status, side_of
from cache.snapshots import UserSnapshot
from db.models import DealStatus, NotificationKind

SHORT_STATUS = {
    DealStatus.PENDING: "pending",
    DealStatus.ACCEPTED: "accepted",
    DealStatus.FUNDED: "funded",
    DealStatus.DELIVERED: "delivered",
    DealStatus.DISPUTED: "disputed",
    DealStatus.RELEASED: "released",
    DealStatus.REFUNDED: "refunded",
    DealStatus.CANCELLED: "cancelled",
    DealStatus.DECLINED: "declined",
    DealStatus.EXPIRED: "expired",
    DealStatus.SPLIT: "split",
}

# The command menu: each command and what it says beside it.
COMMANDS = (
    ("start", "Main menu"),
    ("new", "Open a new deal"),
    ("deals", "Your deals"),
    ("wallet", "Balances, deposits, withdrawals"),
    ("cancel", "Leave what you are doing"),
    ("help", "How escrow works"),
)

HELP = (
    "<b>How escrow works here</b>\n"
    "1. One of you opens a deal: who buys, who sells, the amount and what it is for.\n"
    "2. The other accepts it (by a button, or through the invitation link).\n"
    "3. The buyer funds it: the amount is held in escrow, nobody can spend it.\n"
    "4. The seller delivers and marks the deal as delivered.\n"
    "5. The buyer releases the payment; the seller receives it minus the fee.\n\n"
    "Something wrong? Either party can open a dispute and an admin decides: "
    "release to the seller or refund the buyer.\n\n"
    "<b>Commands</b>\n"
    "/start — main menu\n"
    "/new — open a deal\n"
    "/deals — your deals\n"
    "/wallet — balances, deposits and withdrawals\n"
    "/cancel — leave what you are doing\n"
    "/help — this text"
)

FORGED_BUTTON = "This button isn't valid for you."
OUTDATED_CARD = "This card was out of date: here is the deal as it is now."
NOT_ADMIN = "That is for admins only."
CANCELLED = "Cancelled. Nothing was changed."
FORM_FINISHED = "That form had already finished, so there was nothing to cancel."
WIZARD_FINISHED = "This new-deal wizard had already finished: the deal below was created."
CREATE_UNCONFIRMED = (
    "⚠️ We could not confirm that the deal was created. To be sure, "
    "press ✅ Create deal again: it will not be created twice."
)
NOTHING_TO_CANCEL = "There is nothing to cancel."
FORM_KEPT = "No deal was created. Your deal is kept below: press ✅ Create deal again then."
# Redis failing (bot/telegram/fsm.py): nothing was handled, nothing changed.
MESSAGE_NOT_READ = (
    "⏳ We couldn't read that just now. Nothing was changed: please send it again "
    "in a moment. The buttons below keep working meanwhile."
)
FORM_UNAVAILABLE = (
    "⏳ Forms are unavailable for a moment. Nothing was changed: please try again "
    "shortly. Your deals and wallet can still be viewed."
)


def shorten(value: str, limit: int) -> str:
    """`value`, cut to `limit` characters (an ellipsis the last) if longer: for
    lists, whose entries must fit one message however long each was typed."""
    return value if len(value) <= limit else value[: limit - 1] + "…"


def name_of(user: UserSnapshot) -> str:
    return f"@{user.username}" if user.username else user.first_name


def when(moment: datetime) -> str:
    return moment.strftime("%d %b %Y, %H:%M UTC")


def duration(value: timedelta) -> str:
    """A span in words, rounded up to the minute: "1 min", "2 h 5 min", "3 h"."""
    minutes = max(1, math.ceil(value.total_seconds() / 60))
    hours, minutes = divmod(minutes, 60)
    if not hours:
        return f"{minutes} min"
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


# How deposits reach the wallet, by the deposit provider's name.
DEPOSIT_INSTRUCTIONS = {
    "none": (
        "This bot takes no {code} deposits by itself. To add funds, contact the bot's "
        "admins: an admin credits your wallet once your payment has reached them."
    ),
    "demo": (
        "Demo mode: send an amount of {code} and it is credited to your wallet at once. "
        "No real money is involved."
    ),
    "cryptopay": (
        "Deposits are paid through @CryptoBot: send the amount of {code} you want to "
        "deposit, and you get a payment link. It is credited as soon as Crypto Pay "
        "confirms the payment."
    ),
}


def deposit_instructions(provider: str, code: str) -> str:
    """What the deposit screen says about depositing `code` through `provider`."""
    return DEPOSIT_INSTRUCTIONS[provider].format(code=code)


PLAY_MONEY = "🎲 <b>Demo:</b> balances here are play money, not real funds."
# What a user is told when an admin blocks ({reason}: why) or unblocks them.
ACCOUNT_NOTICES = {
    NotificationKind.ACCOUNT_BLOCKED: (
        "🚫 Your account was blocked by the admins: <i>{reason}</i>\n"
        "You can still view your deals and wallet. Your deals can't be accepted or funded "
        "meanwhile, and disputes are still settled by an admin. If you think this is a "
        "mistake, contact the admins."
    ),
    NotificationKind.ACCOUNT_UNBLOCKED: "✅ Your account was unblocked: you can use the bot again.",
}
ACCOUNT_BLOCKED = (
    "🚫 <b>Your account is blocked</b> by the admins: you can view your deals and wallet, "
    "nothing more."
)


def main_menu(user: UserSnapshot, currencies: Currencies, play_money: bool = False) -> str:
    lines = [f"👋 Hi, {escape(user.first_name or name_of(user))}!", ""]
    balances = [
        currencies[w.currency].format(w.available)
        + (f" (+{currencies[w.currency].format(w.held)} held)" if w.held else "")
        for w in user.wallets
        if w.available or w.held
    ]
    lines.append("Balance: " + (", ".join(balances) if balances else "empty"))
    lines.append(reputation.menu_line(user))
    if user.status == "blocked":
        lines.append(ACCOUNT_BLOCKED)
    if play_money:
        lines.append(PLAY_MONEY)
    lines.append("")
    lines.append("What would you like to do?")
    return "\n".join(lines)


def deal_card(
    deal: DealView,
    viewer_id: int | None,
    currencies: Currencies,
    headline: str = "",
    *,
    record: UserSnapshot | None = None,
    given: Rating | None = None,
) -> str:
    """The one message a party (or an admin, viewer None) sees for a deal, its
    status said to the viewer (bot/telegram/statuses.py); with `record`, the
    other party's (before the viewer accepts or funds); a completed deal's
    party is asked for their rating, or shown it (`given`)."""
    money = currencies[deal.currency]
    role = ""
    if viewer_id is not None and viewer_id == deal.buyer_id:
        role = " · you are the buyer"
    elif viewer_id is not None and viewer_id == deal.seller_id:
        role = " · you are the seller"
    lines = []
    if headline:
        lines += [headline, ""]
    lines += [
        f"<b>Deal #{deal.code}</b>{role}",
        card_status(deal, viewer_id),
        "",
        f"<i>{escape(deal.description)}</i>",
        "",
        f"Amount: <b>{money.format(deal.amount)}</b>",
        f"Fee: {money.format(deal.fee)} ({deal.fee_bps / 100:g}%), paid from the seller's payout",
        f"Seller receives: {money.format(deal.payout)}",
        "",
        f"Buyer: {escape(deal.buyer_name or 'invited, not joined yet')}",
        f"Seller: {escape(deal.seller_name or 'invited, not joined yet')}",
    ]
    if deal.status in (DealStatus.PENDING, DealStatus.ACCEPTED):
        lines.append(f"Must be accepted and funded by {when(deal.deadline_at)}")
    lines += clock_lines(deal, viewer_id)
    if deal.status == DealStatus.DISPUTED and deal.status_before_dispute:
        lines.append(
            f"Disputed after it was {SHORT_STATUS[DealStatus(deal.status_before_dispute)]}"
        )
    if deal.split_seller is not None:
        lines += ["", *split_lines(deal, currencies)]
    if record is not None:
        lines += ["", reputation.record_block(record, money)]
    if viewer_id is not None and reputation.may_rate(deal, viewer_id):
        lines += ["", *reputation.rating_lines(deal, viewer_id, given)]
    return "\n".join(lines)


# A funded deal's clocks on its card, by whose card it is.
DELIVER_BY = {
    "seller": "Deliver by {when}: after that the buyer may cancel and get a refund",
    "buyer": "To be delivered by {when}; if it isn't, you may cancel and get a refund",
    None: "To be delivered by {when}",
}
NOT_DELIVERED = "⌛ Not delivered by {when}: you may cancel and get a refund"
RELEASED_ON = {
    "seller": "Released to you automatically on {when} unless the buyer disputes",
    "buyer": "Released to the seller automatically on {when} unless you dispute",
    None: "Released to the seller automatically on {when} unless disputed",
}


def clock_lines(deal: DealView, viewer_id: int | None, now: datetime | None = None) -> list[str]:
    """The card's line about a funded deal's running clock, if it has one."""
    side = side_of(deal, viewer_id)
    if deal.status == DealStatus.FUNDED and deal.deliver_due_at is not None:
        due = deal.deliver_due_at
        if side == "buyer" and due <= (now or datetime.now(UTC)):
            return [NOT_DELIVERED.format(when=when(due))]
        return [DELIVER_BY[side].format(when=when(due))]
    if deal.status == DealStatus.DELIVERED and deal.release_due_at is not None:
        return [RELEASED_ON[side].format(when=when(deal.release_due_at))]
    return []


def split_lines(deal: DealView, currencies: Currencies) -> list[str]:
    """What a split settlement paid each party."""
    money = currencies[deal.currency]
    part, fee = deal.split_seller or 0, deal.split_fee or 0
    return [
        "✂️ <b>Settled by a split</b>",
        f"To the seller: {money.format(part)} less the fee of {money.format(fee)}, "
        f"<b>{money.format(part - fee)}</b> paid",
        f"Refunded to the buyer: <b>{money.format(deal.refund)}</b>",
    ]
