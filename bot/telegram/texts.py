"""What the bot says. HTML parse mode; every user-given string is escaped."""

from __future__ import annotations

from datetime import datetime
from html import escape

from bot.services.money import Currencies
from bot.services.ratings import Rating
from bot.services.views import DealView
from bot.telegram import reputation
from cache.snapshots import UserSnapshot
from db.models import DealStatus

STATUS = {
    DealStatus.PENDING: "⏳ waiting for the other party to accept",
    DealStatus.ACCEPTED: "🤝 accepted — waiting for the buyer to fund",
    DealStatus.FUNDED: "🔒 funded — the money is held in escrow",
    DealStatus.DELIVERED: "📦 delivered — waiting for the buyer to release",
    DealStatus.DISPUTED: "⚠️ in dispute — an admin will decide",
    DealStatus.RELEASED: "✅ released to the seller",
    DealStatus.REFUNDED: "↩️ refunded to the buyer",
    DealStatus.CANCELLED: "✖️ cancelled",
    DealStatus.DECLINED: "✖️ declined",
    DealStatus.EXPIRED: "⌛ expired",
}

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
    """The one message a party (or an admin, viewer None) sees for a deal;
    with `record`, the other party's (before the viewer accepts or funds);
    a completed deal's party is asked for their rating, or shown it (`given`)."""
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
        STATUS[DealStatus(deal.status)],
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
    if deal.status == DealStatus.DISPUTED and deal.status_before_dispute:
        lines.append(
            f"Disputed after it was {SHORT_STATUS[DealStatus(deal.status_before_dispute)]}"
        )
    if record is not None:
        lines += ["", reputation.record_block(record, money)]
    if viewer_id is not None and reputation.may_rate(deal, viewer_id):
        lines += ["", *reputation.rating_lines(deal, viewer_id, given)]
    return "\n".join(lines)
