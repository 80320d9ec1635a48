"""What notifications say: the catalog's keys, rendered in each recipient's
language by `bot/telegram/notices.py`."""

from __future__ import annotations

from bot.services.rules import Action
from bot.telegram.i18n import N_
from db.models import DealStatus, NotificationKind

# What the other party reads, by what happened ({name}: who did it). The
# catalog's keys: rendered in the recipient's language (`Notices.render`).
TOLD = {
    NotificationKind.JOINED: N_("✅ {name} accepted your invitation."),
    NotificationKind.INVITATION_DECLINED: N_("✖️ {name} declined your invitation."),
    NotificationKind.ACCEPT: N_("✅ {name} accepted the deal."),
    NotificationKind.DECLINE: N_("✖️ {name} declined the deal."),
    NotificationKind.FUND: N_(
        "🔒 {name} funded the deal: the money is held in escrow. Deliver, then mark it "
        "as delivered."
    ),
    NotificationKind.DELIVER: N_(
        "📦 {name} marked the deal as delivered. Check it, then release the payment."
    ),
    NotificationKind.RELEASE: N_("✅ {name} released the payment: it is in your wallet."),
    NotificationKind.DISPUTE: N_("⚠️ {name} opened a dispute. An admin will decide."),
    NotificationKind.CANCEL: N_("✖️ {name} cancelled the deal."),
    NotificationKind.EXPIRE: N_(
        "⌛ This deal expired: it was not accepted and funded by its deadline."
    ),
}
# An invitation names the recipient's side.
INVITED_AS = {
    "buyer": N_("📨 {name} opened a deal with you: you are the buyer. Accept it to go ahead."),
    "seller": N_("📨 {name} opened a deal with you: you are the seller. Accept it to go ahead."),
}
CANCELLED_AND_REFUNDED = N_("↩️ {name} cancelled the deal: the money is back in your wallet.")
RESOLVED = {
    DealStatus.RELEASED: N_(
        "🛡 An admin settled the dispute: the payment is released to the seller."
    ),
    DealStatus.REFUNDED: N_("🛡 An admin settled the dispute: the buyer is refunded."),
}
REASON = N_("Reason: <i>{reason}</i>")
DISPUTE_OPENED = N_("🛡 New dispute opened by {name} ({role}).")
DEPOSIT_CREDITED = N_("✅ Your deposit of {amount} has arrived: it is in your wallet.")
DEPOSIT_FEE = N_(" ({paid} paid, less Crypto Pay's fee of {fee}.)")
WITHDRAWAL_PAID = N_("✅ Your withdrawal #{id} of {amount} was sent to your @CryptoBot wallet.")
WITHDRAWAL_FAILED = N_(
    "↩️ Your withdrawal #{id} of {amount} could not be sent: the amount is back in your "
    "wallet's available balance. The admins have been told."
)
PAYOUT_FAILED = N_(
    "⚠️ Crypto Pay refused the payout of withdrawal #{id} ({amount}): <code>{reason}</code>. "
    "The amount is back in the user's available balance. Top up the Crypto Pay app "
    "if its balance ran short."
)
DEPOSIT_MISMATCH = N_(
    "⚠️ Deposit #{id} (Crypto Pay invoice {invoice}) by {name} (id <code>{telegram_id}</code>) "
    "was paid as {paid}, not the invoiced {amount}. It was not credited: check the payment "
    "in Crypto Pay, and credit it by hand if it is right."
)
WITHDRAWAL_REQUESTED = N_(
    "🛡 New withdrawal request #{id} from {name} (id <code>{telegram_id}</code>): {amount}\n"
    "To: <code>{destination}</code>"
)
WITHDRAWAL_APPROVED = N_(
    "✅ Your withdrawal #{id} of {amount} to <code>{destination}</code> was approved and sent."
)
WITHDRAWAL_REJECTED = N_(
    "✖️ Your withdrawal #{id} of {amount} was rejected: <i>{note}</i>\n"
    "The amount is back in your available balance."
)
WITHDRAWAL_TIMED_OUT = N_(
    "✖️ Your withdrawal #{id} of {amount} was not decided in time and is cancelled.\n"
    "The amount is back in your available balance."
)
SOMEONE = N_("someone")  # an actor the notification can't name


# What a reminder asks for: the steps that move a deal on (not cancelling it),
# and the reminder for each set of them.
REMINDED_ACTIONS = (Action.ACCEPT, Action.FUND)
REMINDERS = {
    frozenset({Action.ACCEPT}): N_(
        "⏰ Reminder: this deal expires in {hours} h unless you accept it."
    ),
    frozenset({Action.FUND}): N_("⏰ Reminder: this deal expires in {hours} h unless you fund it."),
    frozenset({Action.ACCEPT, Action.FUND}): N_(
        "⏰ Reminder: this deal expires in {hours} h unless you accept it and fund it."
    ),
}
