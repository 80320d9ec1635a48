"""What notifications say, word for word (`bot/telegram/notices.py` puts
them together with their deal, deposit or withdrawal and their buttons)."""

from __future__ import annotations

from db.models import DealStatus, NotificationKind

# What the other party reads, by what happened ({name}: who did it).
TOLD = {
    NotificationKind.INVITED: (
        "📨 {name} opened a deal with you: you are the {role}. Accept it to go ahead."
    ),
    NotificationKind.JOINED: "✅ {name} accepted your invitation.",
    NotificationKind.INVITATION_DECLINED: "✖️ {name} declined your invitation.",
    NotificationKind.ACCEPT: "✅ {name} accepted the deal.",
    NotificationKind.DECLINE: "✖️ {name} declined the deal.",
    NotificationKind.FUND: (
        "🔒 {name} funded the deal: the money is held in escrow. Deliver, then mark it "
        "as delivered."
    ),
    NotificationKind.DELIVER: (
        "📦 {name} marked the deal as delivered. Check it, then release the payment."
    ),
    NotificationKind.RELEASE: "✅ {name} released the payment: it is in your wallet.",
    NotificationKind.DISPUTE: "⚠️ {name} opened a dispute. An admin will decide.",
    NotificationKind.CANCEL: "✖️ {name} cancelled the deal.",
    NotificationKind.EXPIRE: (
        "⌛ This deal expired: it was not accepted and funded by its deadline."
    ),
}
CANCELLED_AND_REFUNDED = "↩️ {name} cancelled the deal: the money is back in your wallet."
RESOLVED = {
    DealStatus.RELEASED: "🛡 An admin settled the dispute: the payment is released to the seller.",
    DealStatus.REFUNDED: "🛡 An admin settled the dispute: the buyer is refunded.",
}
DISPUTE_OPENED = "🛡 New dispute opened by {name} ({role})."
DEPOSIT_CREDITED = "✅ Your deposit of {amount} has arrived: it is in your wallet."
DEPOSIT_FEE = " ({paid} paid, less Crypto Pay's fee of {fee}.)"
WITHDRAWAL_PAID = "✅ Your withdrawal #{id} of {amount} was sent to your @CryptoBot wallet."
WITHDRAWAL_FAILED = (
    "↩️ Your withdrawal #{id} of {amount} could not be sent: the amount is back in your "
    "wallet's available balance. The admins have been told."
)
PAYOUT_FAILED = (
    "⚠️ Crypto Pay refused the payout of withdrawal #{id} ({amount}): <code>{reason}</code>. "
    "The amount is back in the user's available balance. Top up the Crypto Pay app "
    "if its balance ran short."
)
DEPOSIT_MISMATCH = (
    "⚠️ Deposit #{id} (Crypto Pay invoice {invoice}) by {name} (id <code>{telegram_id}</code>) "
    "was paid as {paid}, not the invoiced {amount}. It was not credited: check the payment "
    "in Crypto Pay, and credit it by hand if it is right."
)
WITHDRAWAL_REQUESTED = (
    "🛡 New withdrawal request #{id} from {name} (id <code>{telegram_id}</code>): {amount}\n"
    "To: <code>{destination}</code>"
)
WITHDRAWAL_APPROVED = (
    "✅ Your withdrawal #{id} of {amount} to <code>{destination}</code> was approved and sent."
)
WITHDRAWAL_REJECTED = (
    "✖️ Your withdrawal #{id} of {amount} was rejected: <i>{note}</i>\n"
    "The amount is back in your available balance."
)
WITHDRAWAL_TIMED_OUT = (
    "✖️ Your withdrawal #{id} of {amount} was not decided in time and is cancelled.\n"
    "The amount is back in your available balance."
)
