"""What the bot says. HTML parse mode; every user-given string is escaped."""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape

from babel.numbers import format_decimal

from bot.services.money import Currencies
from bot.services.ratings import Rating
from bot.services.views import DealView
from bot.telegram import reputation
from bot.telegram.i18n import N_, _, current_locale
from bot.telegram.moments import when
from bot.telegram.statuses import card_status, side_of
from cache.snapshots import UserSnapshot
from db.models import DealStatus, NotificationKind

# A status's name, as the admin's stats list it.
SHORT_STATUS = {
    DealStatus.PENDING: N_("pending"),
    DealStatus.ACCEPTED: N_("accepted"),
    DealStatus.FUNDED: N_("funded"),
    DealStatus.DELIVERED: N_("delivered"),
    DealStatus.DISPUTED: N_("disputed"),
    DealStatus.RELEASED: N_("released"),
    DealStatus.REFUNDED: N_("refunded"),
    DealStatus.CANCELLED: N_("cancelled"),
    DealStatus.DECLINED: N_("declined"),
    DealStatus.EXPIRED: N_("expired"),
    DealStatus.SPLIT: N_("split"),
}
# "Disputed after it was ...": the status a dispute interrupted.
DISPUTED_AFTER = {
    DealStatus.PENDING: N_("Disputed after it was pending"),
    DealStatus.ACCEPTED: N_("Disputed after it was accepted"),
    DealStatus.FUNDED: N_("Disputed after it was funded"),
    DealStatus.DELIVERED: N_("Disputed after it was delivered"),
    DealStatus.DISPUTED: N_("Disputed after it was disputed"),
    DealStatus.RELEASED: N_("Disputed after it was released"),
    DealStatus.REFUNDED: N_("Disputed after it was refunded"),
    DealStatus.CANCELLED: N_("Disputed after it was cancelled"),
    DealStatus.DECLINED: N_("Disputed after it was declined"),
    DealStatus.EXPIRED: N_("Disputed after it was expired"),
    DealStatus.SPLIT: N_("Disputed after it was split"),
}

# The command menu: each command and what it says beside it.
COMMANDS = (
    ("start", N_("Main menu")),
    ("new", N_("Open a new deal")),
    ("deals", N_("Your deals")),
    ("wallet", N_("Balances, deposits, withdrawals")),
    ("language", N_("The language I speak to you")),
    ("cancel", N_("Leave what you are doing")),
    ("help", N_("How escrow works")),
)

HELP = N_(
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
    "/language — the language I speak to you\n"
    "/cancel — leave what you are doing\n"
    "/help — this text"
)

# Read through _() where used: constants are the catalog's keys.
FORGED_BUTTON = N_("This button isn't valid for you.")
OUTDATED_CARD = N_("This card was out of date: here is the deal as it is now.")
NOT_ADMIN = N_("That is for admins only.")
CANCELLED = N_("Cancelled. Nothing was changed.")
FORM_FINISHED = N_("That form had already finished, so there was nothing to cancel.")
WIZARD_FINISHED = N_("This new-deal wizard had already finished: the deal below was created.")
CREATE_UNCONFIRMED = N_(
    "⚠️ We could not confirm that the deal was created. To be sure, "
    "press ✅ Create deal again: it will not be created twice."
)
NOTHING_TO_CANCEL = N_("There is nothing to cancel.")
FORM_KEPT = N_("No deal was created. Your deal is kept below: press ✅ Create deal again then.")
# Redis failing (bot/telegram/fsm.py): nothing was handled, nothing changed.
MESSAGE_NOT_READ = N_(
    "⏳ We couldn't read that just now. Nothing was changed: please send it again "
    "in a moment. The buttons below keep working meanwhile."
)
FORM_UNAVAILABLE = N_(
    "⏳ Forms are unavailable for a moment. Nothing was changed: please try again "
    "shortly. Your deals and wallet can still be viewed."
)


def shorten(value: str, limit: int) -> str:
    """`value`, cut to `limit` characters (an ellipsis the last) if longer: for
    lists, whose entries must fit one message however long each was typed."""
    return value if len(value) <= limit else value[: limit - 1] + "…"


def name_of(user: UserSnapshot) -> str:
    return f"@{user.username}" if user.username else user.first_name


# How deposits reach the wallet, by the deposit provider's name.
DEPOSIT_INSTRUCTIONS = {
    "none": N_(
        "This bot takes no {code} deposits by itself. To add funds, contact the bot's "
        "admins: an admin credits your wallet once your payment has reached them."
    ),
    "demo": N_(
        "Demo mode: send an amount of {code} and it is credited to your wallet at once. "
        "No real money is involved."
    ),
    "cryptopay": N_(
        "Deposits are paid through @CryptoBot: send the amount of {code} you want to "
        "deposit, and you get a payment link. It is credited as soon as Crypto Pay "
        "confirms the payment."
    ),
}


def deposit_instructions(provider: str, code: str) -> str:
    """What the deposit screen says about depositing `code` through `provider`."""
    return _(DEPOSIT_INSTRUCTIONS[provider]).format(code=code)


PLAY_MONEY = N_("🎲 <b>Demo:</b> balances here are play money, not real funds.")
# What a user is told when an admin blocks ({reason}: why) or unblocks them.
ACCOUNT_NOTICES = {
    NotificationKind.ACCOUNT_BLOCKED: N_(
        "🚫 Your account was blocked by the admins: <i>{reason}</i>\n"
        "You can still view your deals and wallet. Your deals can't be accepted or funded "
        "meanwhile, and disputes are still settled by an admin. If you think this is a "
        "mistake, contact the admins."
    ),
    NotificationKind.ACCOUNT_UNBLOCKED: N_(
        "✅ Your account was unblocked: you can use the bot again."
    ),
}
ACCOUNT_BLOCKED = N_(
    "🚫 <b>Your account is blocked</b> by the admins: you can view your deals and wallet, "
    "nothing more."
)


def main_menu(user: UserSnapshot, currencies: Currencies, play_money: bool = False) -> str:
    lines = [_("👋 Hi, {name}!").format(name=escape(user.first_name or name_of(user))), ""]
    balances = [
        currencies[w.currency].format(w.available)
        + (
            _(" (+{amount} held)").format(amount=currencies[w.currency].format(w.held))
            if w.held
            else ""
        )
        for w in user.wallets
        if w.available or w.held
    ]
    said = ", ".join(balances) if balances else _("empty")
    lines.append(_("Balance: {balances}").format(balances=said))
    lines.append(reputation.menu_line(user))
    if user.status == "blocked":
        lines.append(_(ACCOUNT_BLOCKED))
    if play_money:
        lines.append(_(PLAY_MONEY))
    lines.append("")
    lines.append(_("What would you like to do?"))
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
    title = _("<b>Deal #{code}</b>")
    if viewer_id is not None and viewer_id == deal.buyer_id:
        title = _("<b>Deal #{code}</b> · you are the buyer")
    elif viewer_id is not None and viewer_id == deal.seller_id:
        title = _("<b>Deal #{code}</b> · you are the seller")
    not_joined = _("invited, not joined yet")
    lines = []
    if headline:
        lines += [headline, ""]
    lines += [
        title.format(code=deal.code),
        card_status(deal, viewer_id),
        "",
        f"<i>{escape(deal.description)}</i>",
        "",
        _("Amount: <b>{amount}</b>").format(amount=money.format(deal.amount)),
        _("Fee: {fee} ({rate}%), paid from the seller's payout").format(
            fee=money.format(deal.fee), rate=percent(deal.fee_bps)
        ),
        _("Seller receives: {amount}").format(amount=money.format(deal.payout)),
        "",
        _("Buyer: {name}").format(name=escape(deal.buyer_name or not_joined)),
        _("Seller: {name}").format(name=escape(deal.seller_name or not_joined)),
    ]
    if deal.status in (DealStatus.PENDING, DealStatus.ACCEPTED):
        lines.append(_("Must be accepted and funded by {when}").format(when=when(deal.deadline_at)))
    lines += clock_lines(deal, viewer_id)
    if deal.status == DealStatus.DISPUTED and deal.status_before_dispute:
        lines.append(_(DISPUTED_AFTER[DealStatus(deal.status_before_dispute)]))
    if deal.split_seller is not None:
        lines += ["", *split_lines(deal, currencies)]
    if record is not None:
        lines += ["", reputation.record_block(record, money)]
    if viewer_id is not None and reputation.may_rate(deal, viewer_id):
        lines += ["", *reputation.rating_lines(deal, viewer_id, given)]
    return "\n".join(lines)


def percent(bps: int) -> str:
    """A fee rate in basis points as the reader writes it: "1.5" (English), "1,5" (Russian)."""
    return format_decimal(bps / 100, locale=current_locale())


# A funded deal's clocks on its card, by whose card it is.
DELIVER_BY = {
    "seller": N_("Deliver by {when}: after that the buyer may cancel and get a refund"),
    "buyer": N_("To be delivered by {when}; if it isn't, you may cancel and get a refund"),
    None: N_("To be delivered by {when}"),
}
NOT_DELIVERED = N_("⌛ Not delivered by {when}: you may cancel and get a refund")
RELEASED_ON = {
    "seller": N_("Released to you automatically on {when} unless the buyer disputes"),
    "buyer": N_("Released to the seller automatically on {when} unless you dispute"),
    None: N_("Released to the seller automatically on {when} unless disputed"),
}


def clock_lines(deal: DealView, viewer_id: int | None, now: datetime | None = None) -> list[str]:
    """The card's line about a funded deal's running clock, if it has one."""
    side = side_of(deal, viewer_id)
    if deal.status == DealStatus.FUNDED and deal.deliver_due_at is not None:
        due = deal.deliver_due_at
        if side == "buyer" and due <= (now or datetime.now(UTC)):
            return [_(NOT_DELIVERED).format(when=when(due))]
        return [_(DELIVER_BY[side]).format(when=when(due))]
    if deal.status == DealStatus.DELIVERED and deal.release_due_at is not None:
        return [_(RELEASED_ON[side]).format(when=when(deal.release_due_at))]
    return []


def split_lines(deal: DealView, currencies: Currencies) -> list[str]:
    """What a split settlement paid each party."""
    money = currencies[deal.currency]
    part, fee = deal.split_seller or 0, deal.split_fee or 0
    return [
        _("✂️ <b>Settled by a split</b>"),
        _("To the seller: {part} less the fee of {fee}, <b>{paid}</b> paid").format(
            part=money.format(part), fee=money.format(fee), paid=money.format(part - fee)
        ),
        _("Refunded to the buyer: <b>{amount}</b>").format(amount=money.format(deal.refund)),
    ]
