"""Tables, constraints and indexes.

Money columns are BIGINT minor units. Every state column is a short string
guarded by a CHECK constraint, so a typo in a status can never reach the
database. The indexes serve the hot statements of `db/sql/` (the registry in
`db/sql/hot.py` names the index each plan uses, and the indexes nothing uses).
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

CURRENCY_CODE_LENGTH = 10
USERNAME_LENGTH = 32
REVIEW_LENGTH = 200


class UserStatus(enum.StrEnum):
    ACTIVE = "active"
    BLOCKED = "blocked"


class DealStatus(enum.StrEnum):
    PENDING = "pending"  # created, waiting for the counterparty to accept
    ACCEPTED = "accepted"  # both parties agreed, waiting for the buyer to fund
    FUNDED = "funded"  # the amount is held from the buyer's wallet
    DELIVERED = "delivered"  # the seller marked the goods as delivered
    DISPUTED = "disputed"  # waiting for an admin
    RELEASED = "released"  # paid out to the seller (final)
    REFUNDED = "refunded"  # returned to the buyer (final)
    CANCELLED = "cancelled"  # called off before funding (final)
    DECLINED = "declined"  # the counterparty said no (final)
    EXPIRED = "expired"  # not accepted and funded by the deadline (final)
    SPLIT = "split"  # an admin settled: part to the seller, the rest refunded (final)


OPEN_DEAL_STATUSES = (DealStatus.PENDING, DealStatus.ACCEPTED)
FUNDED_DEAL_STATUSES = (DealStatus.FUNDED, DealStatus.DELIVERED, DealStatus.DISPUTED)
FINAL_DEAL_STATUSES = (
    DealStatus.RELEASED,
    DealStatus.REFUNDED,
    DealStatus.CANCELLED,
    DealStatus.DECLINED,
    DealStatus.EXPIRED,
    DealStatus.SPLIT,
)


class InvitationStatus(enum.StrEnum):
    ACTIVE = "active"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    EXPIRED = "expired"
    REVOKED = "revoked"


class WithdrawalStatus(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"  # paid by hand (no payment provider): the money left then
    REJECTED = "rejected"
    SENDING = "sending"  # approved for a provider's payout: held until it is settled
    PAID = "paid"  # the provider's transfer went through: the money left
    FAILED = "failed"  # the provider refused the transfer: the money is available again


class DepositStatus(enum.StrEnum):
    """A deposit by invoice: the row is written before the provider is asked."""

    CREATING = "creating"  # the provider was asked for an invoice
    ACTIVE = "active"  # the invoice exists and may be paid
    PAID = "paid"  # paid as invoiced and credited (once: the ledger key is the invoice)
    EXPIRED = "expired"  # never paid
    MISMATCHED = "mismatched"  # paid in another asset or amount: not credited, admins told
    FAILED = "failed"  # the provider refused to create the invoice


OPEN_DEPOSIT_STATUSES = (DepositStatus.CREATING, DepositStatus.ACTIVE)


class NotificationStatus(enum.StrEnum):
    PENDING = "pending"
    SENT = "sent"
    UNDELIVERABLE = "undeliverable"  # Telegram refuses this chat: blocked, never started
    FAILED = "failed"  # every attempt failed
    OBSOLETE = "obsolete"  # no longer true when it could be sent (a reminder, the deal moved on)


class NotificationKind(enum.StrEnum):
    """What a notification tells; the bot renders each kind (`bot/telegram/notices.py`)."""

    INVITED = "invited"  # a deal was opened with you
    JOINED = "joined"  # your invitation was taken up
    INVITATION_DECLINED = "invitation_declined"
    ACCEPT = "accept"
    DECLINE = "decline"
    FUND = "fund"
    DELIVER = "deliver"
    RELEASE = "release"
    DISPUTE = "dispute"
    CANCEL = "cancel"
    RESOLVE = "resolve"
    EXPIRE = "expire"
    DISPUTE_OPENED = "dispute_opened"  # to the admins
    WITHDRAWAL_REQUESTED = "withdrawal_requested"  # to the admins
    WITHDRAWAL_DECIDED = "withdrawal_decided"  # to the owner
    REMIND = "remind"  # a deadline is near and you must act (note: the deal's status)
    DEPOSIT_CREDITED = "deposit_credited"  # to the owner: a paid invoice was credited
    DEPOSIT_MISMATCH = "deposit_mismatch"  # to the admins: paid, but not as invoiced
    WITHDRAWAL_PAID = "withdrawal_paid"  # to the owner: the provider's transfer went through
    WITHDRAWAL_FAILED = "withdrawal_failed"  # to the owner: refused, the money is back
    PAYOUT_FAILED = "payout_failed"  # to the admins: a provider refused a payout
    DISPUTE_EVIDENCE = "dispute_evidence"  # to the admins: a party's evidence, relayed
    ACCOUNT_BLOCKED = "account_blocked"  # to the user, with the reason (note)
    ACCOUNT_UNBLOCKED = "account_unblocked"  # to the user


class EvidenceKind(enum.StrEnum):
    PHOTO = "photo"
    DOCUMENT = "document"
    TEXT = "text"


class LedgerKind(enum.StrEnum):
    DEPOSIT = "deposit"
    HOLD = "hold"
    RELEASE = "release"
    FEE = "fee"
    REFUND = "refund"
    WITHDRAWAL = "withdrawal"


class LedgerAccount(enum.StrEnum):
    AVAILABLE = "available"  # a user's wallet, spendable part
    HELD = "held"  # a user's wallet, held for a deal or a withdrawal
    FEES = "fees"  # the platform's fee account
    EXTERNAL = "external"  # money outside the system (deposits in, withdrawals out)


# Only deals whose clock runs: a statement that moves a deal by its id (and
# never names the clock) has no use for these indexes, however small the table.
_RELEASE_RUNS = "status = 'delivered' AND release_due_at IS NOT NULL"
_DELIVERY_RUNS = "status = 'funded' AND deliver_due_at IS NOT NULL"


def _in(column: str, values: type[enum.StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    telegram_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    username: Mapped[str | None] = mapped_column(String(USERNAME_LENGTH))
    first_name: Mapped[str] = mapped_column(String(64), server_default="")
    last_name: Mapped[str | None] = mapped_column(String(64))
    language_code: Mapped[str | None] = mapped_column(String(16))
    # The language the user chose in the menu; NULL: not chosen, Telegram's
    # language_code decides (bot/telegram/i18n.py).
    locale: Mapped[str | None] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), server_default=UserStatus.ACTIVE.value)
    is_admin: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    # Bumped by every change to the user's snapshot (profile or any wallet), in
    # the same transaction; the cache refuses to overwrite a newer version.
    version: Mapped[int] = mapped_column(BigInteger, server_default=text("1"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # When Telegram last reported this name and @username (written by registration).
    profile_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    wallets: Mapped[list[Wallet]] = relationship(back_populates="user", lazy="raise")

    __table_args__ = (
        CheckConstraint(_in("status", UserStatus), name="status"),
        # Counterparty lookup by @username is case-insensitive, and a name has
        # one holder: registration takes it from whoever held it before.
        Index("uq_users_username_lower", func.lower(username), unique=True),
    )


class Wallet(Base):
    __tablename__ = "wallets"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    currency: Mapped[str] = mapped_column(String(CURRENCY_CODE_LENGTH))
    available: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    held: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))

    user: Mapped[User] = relationship(back_populates="wallets", lazy="raise")

    __table_args__ = (
        CheckConstraint("available >= 0", name="available_not_negative"),
        CheckConstraint("held >= 0", name="held_not_negative"),
        Index("idx_wallet_user_currency", "user_id", "currency", unique=True),
    )


class Escrow(Base):
    """A deal between a buyer and a seller."""

    __tablename__ = "escrows"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    code: Mapped[str] = mapped_column(String(16), unique=True)
    creator_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    # The invited side stays NULL until the invitee accepts.
    buyer_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    seller_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    amount: Mapped[int] = mapped_column(BigInteger)
    fee: Mapped[int] = mapped_column(BigInteger)
    fee_bps: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(CURRENCY_CODE_LENGTH))
    description: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), server_default=DealStatus.PENDING.value)
    status_before_dispute: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    funded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    deadline_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    version: Mapped[int] = mapped_column(BigInteger, server_default=text("1"))
    # The creating wizard's id: retrying Create after an unknown outcome finds this deal.
    create_key: Mapped[str | None] = mapped_column(String(64))
    # The deals' clocks, set when funded and when delivered ([escrow] settings;
    # NULL: no such clock): the seller delivers by deliver_due_at, else the
    # buyer may cancel for a refund; release_due_at releases a delivered deal.
    deliver_due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    release_due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Addressed to someone the creator never had a funded deal with (paced).
    to_stranger: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    # A split settlement: the seller's part (gross) and the fee taken from it.
    split_seller: Mapped[int | None] = mapped_column(BigInteger)
    split_fee: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (
        CheckConstraint(_in("status", DealStatus), name="status"),
        CheckConstraint(
            f"status_before_dispute IS NULL OR {_in('status_before_dispute', DealStatus)}",
            name="status_before_dispute",
        ),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("fee >= 0 AND fee <= amount", name="fee_within_amount"),
        CheckConstraint("fee_bps >= 0 AND fee_bps <= 10000", name="fee_bps_range"),
        CheckConstraint("buyer_id <> seller_id", name="distinct_parties"),
        CheckConstraint("creator_id = buyer_id OR creator_id = seller_id", name="creator_is_party"),
        CheckConstraint(
            "(status = 'split') = (split_seller IS NOT NULL) AND (split_seller IS NULL OR"
            " (split_seller > 0 AND split_seller < amount"
            " AND split_fee BETWEEN 0 AND split_seller))",
            name="split_within_amount",
        ),
        # The seed's composite indexes; `id` last so a party's deals in one
        # status page by keyset without a sort.
        Index("idx_escrow_buyer_status", "buyer_id", "status", "id"),
        Index("idx_escrow_seller_status", "seller_id", "status", "id"),
        Index("idx_escrow_created_at", "created_at"),
        # The expiry job reads only deals that can still expire.
        Index(
            "ix_escrows_open_deadline",
            "deadline_at",
            postgresql_where=text("status IN ('pending', 'accepted')"),
        ),
        # The clocks' jobs read only the deals each clock can still run out on.
        Index("ix_escrows_release_due", "release_due_at", postgresql_where=text(_RELEASE_RUNS)),
        Index("ix_escrows_deliver_due", "deliver_due_at", postgresql_where=text(_DELIVERY_RUNS)),
        # A creator's deals in the pace window (all of them, and to strangers).
        Index("ix_escrows_creator_created", "creator_id", "created_at"),
        Index(
            "ix_escrows_creator_stranger",
            "creator_id",
            "created_at",
            postgresql_where=text("to_stranger"),
        ),
        # The admin panel lists open disputes, oldest first.
        Index("ix_escrows_disputed", "updated_at", postgresql_where=text("status = 'disputed'")),
        Index(
            "uq_escrows_creator_create_key",
            "creator_id",
            "create_key",
            unique=True,
            postgresql_where=text("create_key IS NOT NULL"),
        ),
    )


class Invitation(Base):
    """An invitation to a deal for someone who is not a party yet."""

    __tablename__ = "invitations"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    # The deep-link payload: opaque and unguessable.
    code: Mapped[str] = mapped_column(String(64), unique=True)
    escrow_id: Mapped[int] = mapped_column(ForeignKey("escrows.id", ondelete="CASCADE"))
    inviter_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    # Whom it is for: a Telegram id, a lower-cased @username, or anyone with the link.
    telegram_id: Mapped[int | None] = mapped_column(BigInteger)
    username: Mapped[str | None] = mapped_column(String(USERNAME_LENGTH))
    status: Mapped[str] = mapped_column(String(16), server_default=InvitationStatus.ACTIVE.value)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        CheckConstraint(_in("status", InvitationStatus), name="status"),
        Index("idx_invitation_telegram_status", "telegram_id", "status"),
        Index("ix_invitations_username_status", "username", "status"),
        Index("ix_invitations_escrow_id", "escrow_id"),
    )


class Withdrawal(Base):
    __tablename__ = "withdrawals"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    currency: Mapped[str] = mapped_column(String(CURRENCY_CODE_LENGTH))
    amount: Mapped[int] = mapped_column(BigInteger)
    destination: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), server_default=WithdrawalStatus.PENDING.value)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    decided_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    note: Mapped[str | None] = mapped_column(Text)
    # A provider's payout (Crypto Pay): its transfer, when it went through or
    # why it was refused.
    payout: Mapped[str | None] = mapped_column(String(16))
    transfer_id: Mapped[int | None] = mapped_column(BigInteger)
    paid_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    failure: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        CheckConstraint(_in("status", WithdrawalStatus), name="status"),
        CheckConstraint("amount > 0", name="amount_positive"),
        Index("ix_withdrawals_user_id", "user_id", "id"),
        Index("ix_withdrawals_pending", "id", postgresql_where=text("status = 'pending'")),
        Index("ix_withdrawals_sending", "id", postgresql_where=text("status = 'sending'")),
    )


class DepositInvoice(Base):
    """A deposit through a payment provider's invoice (Crypto Pay): what was
    asked, and what the provider says was paid."""

    __tablename__ = "deposits"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    currency: Mapped[str] = mapped_column(String(CURRENCY_CODE_LENGTH))
    amount: Mapped[int] = mapped_column(BigInteger)  # minor units
    provider: Mapped[str] = mapped_column(String(16))
    invoice_id: Mapped[int | None] = mapped_column(BigInteger)  # the provider's
    pay_url: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), server_default=DepositStatus.CREATING.value)
    # As the provider reported the payment (asset code, decimal amount text).
    paid_asset: Mapped[str | None] = mapped_column(String(16))
    paid_amount: Mapped[str | None] = mapped_column(String(64))
    # The provider's fee on the payment, in minor units: the payer's, so the
    # wallet is credited `amount - fee` (what the provider holds for it).
    fee: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    settled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint(_in("status", DepositStatus), name="status"),
        CheckConstraint("amount > 0", name="amount_positive"),
        Index(
            "uq_deposits_provider_invoice",
            "provider",
            "invoice_id",
            unique=True,
            postgresql_where=text("invoice_id IS NOT NULL"),
        ),
        Index("ix_deposits_user_id", "user_id", "created_at"),
        Index("ix_deposits_open", "id", postgresql_where=text("status IN ('creating', 'active')")),
    )


class LedgerEntry(Base):
    """One leg of a double-entry money movement; the legs of a movement sum to zero."""

    __tablename__ = "ledger_entries"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    # One key per movement (e.g. "release:42"); a retried movement cannot post twice.
    idempotency_key: Mapped[str] = mapped_column(String(128))
    leg: Mapped[int] = mapped_column(SmallInteger)
    kind: Mapped[str] = mapped_column(String(16))
    account: Mapped[str] = mapped_column(String(16))
    currency: Mapped[str] = mapped_column(String(CURRENCY_CODE_LENGTH))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    escrow_id: Mapped[int | None] = mapped_column(ForeignKey("escrows.id"))
    withdrawal_id: Mapped[int | None] = mapped_column(ForeignKey("withdrawals.id"))
    amount: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        CheckConstraint(_in("kind", LedgerKind), name="kind"),
        CheckConstraint(_in("account", LedgerAccount), name="account"),
        CheckConstraint("amount <> 0", name="amount_not_zero"),
        CheckConstraint(
            "(account IN ('available', 'held')) = (user_id IS NOT NULL)",
            name="wallet_legs_have_user",
        ),
        Index("uq_ledger_entries_idempotency_key_leg", "idempotency_key", "leg", unique=True),
        Index("ix_ledger_entries_user_id", "user_id", "currency", "id"),
        Index("ix_ledger_entries_escrow_id", "escrow_id"),
    )


class DealEvent(Base):
    """Append-only history: one row for every status change of a deal."""

    __tablename__ = "deal_events"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    escrow_id: Mapped[int] = mapped_column(ForeignKey("escrows.id", ondelete="CASCADE"))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))  # NULL: the system
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (Index("ix_deal_events_escrow_id", "escrow_id", "id"),)


class Notification(Base):
    """The outbox: a message to someone, written in the transaction of the change
    it tells about, and sent (first at once, then by the outbox worker) until
    Telegram takes it or refuses the chat for good. No foreign keys: every row
    is written from rows the same statement just read, and nothing references it."""

    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    chat_id: Mapped[int] = mapped_column(BigInteger)
    user_id: Mapped[int | None] = mapped_column(BigInteger)  # the recipient; NULL: an admin chat
    kind: Mapped[str] = mapped_column(String(32))
    escrow_id: Mapped[int | None] = mapped_column(BigInteger)
    withdrawal_id: Mapped[int | None] = mapped_column(BigInteger)
    deposit_id: Mapped[int | None] = mapped_column(BigInteger)
    evidence_id: Mapped[int | None] = mapped_column(BigInteger)
    actor_id: Mapped[int | None] = mapped_column(BigInteger)  # who caused it; NULL: the system
    note: Mapped[str | None] = mapped_column(Text)
    # The recipient's language when it was written (their chosen locale, else
    # Telegram's language_code; NULL: not a user of the bot): what it is said in.
    language: Mapped[str | None] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), server_default=NotificationStatus.PENDING.value)
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    # When the worker may (next) try: the first attempt is the handler's own, so
    # a new row is due only after a grace period.
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        CheckConstraint(_in("status", NotificationStatus), name="status"),
        CheckConstraint(_in("kind", NotificationKind), name="kind"),
        Index("ix_notifications_due", "due_at", postgresql_where=text("status = 'pending'")),
        # Rows are appended in time order: a BRIN index finds old ones to prune
        # for almost nothing on every insert.
        Index("ix_notifications_created_at", "created_at", postgresql_using="brin"),
        # One deadline reminder per deal, party and status of the deal.
        Index(
            "uq_notifications_reminder",
            "escrow_id",
            "user_id",
            "note",
            unique=True,
            postgresql_where=text("kind = 'remind'"),
        ),
    )


class DisputeEvidence(Base):
    """A photo, document or text a party sent the admins about an open dispute.
    Telegram keeps the file; this keeps its file id, who sent it and when."""

    __tablename__ = "dispute_evidence"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    escrow_id: Mapped[int] = mapped_column(ForeignKey("escrows.id", ondelete="CASCADE"))
    sender_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    kind: Mapped[str] = mapped_column(String(16))
    file_id: Mapped[str | None] = mapped_column(String(256))  # Telegram's, for photo and document
    file_name: Mapped[str | None] = mapped_column(String(256))
    file_size: Mapped[int | None] = mapped_column(BigInteger)
    text: Mapped[str | None] = mapped_column(Text)  # the text, or the file's caption
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        CheckConstraint(_in("kind", EvidenceKind), name="kind"),
        CheckConstraint("(kind = 'text') = (file_id IS NULL)", name="file_unless_text"),
        Index("ix_dispute_evidence_escrow_id", "escrow_id", "sender_id"),
    )


class UserStatusChange(Base):
    """An admin blocking or unblocking a user, and why (append-only)."""

    __tablename__ = "user_status_changes"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    admin_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    status: Mapped[str] = mapped_column(String(16))  # the user's status from then on
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        CheckConstraint(_in("status", UserStatus), name="status"),
        Index("ix_user_status_changes_user_id", "user_id", "id"),
    )


class Reputation(Base):
    """A user's record in one currency: counters kept by the statements that
    change them (a deal's completion, a dispute, a rating), never counted."""

    __tablename__ = "reputations"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    currency: Mapped[str] = mapped_column(String(CURRENCY_CODE_LENGTH), primary_key=True)
    deals: Mapped[int] = mapped_column(Integer, server_default=text("0"))  # completed
    volume: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))  # released, minor
    disputes_opened: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    disputes_lost: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    ratings: Mapped[int] = mapped_column(Integer, server_default=text("0"))  # received
    stars: Mapped[int] = mapped_column(Integer, server_default=text("0"))  # their sum


class Rating(Base):
    """One party's rating of the other after a completed deal: once per party and deal."""

    __tablename__ = "ratings"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    escrow_id: Mapped[int] = mapped_column(ForeignKey("escrows.id"))
    rater_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    rated_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    stars: Mapped[int] = mapped_column(SmallInteger)
    review: Mapped[str | None] = mapped_column(String(REVIEW_LENGTH))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        CheckConstraint("stars BETWEEN 1 AND 5", name="stars_range"),
        Index("uq_ratings_deal_rater", "escrow_id", "rater_id", unique=True),
        # the reviews a user received, newest first
        Index("ix_ratings_reviews", "rated_id", "id", postgresql_where=text("review IS NOT NULL")),
    )


class PlatformAccount(Base):
    """The platform's fee balance per currency."""

    __tablename__ = "platform_accounts"

    currency: Mapped[str] = mapped_column(String(CURRENCY_CODE_LENGTH), primary_key=True)
    fees: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (CheckConstraint("fees >= 0", name="fees_not_negative"),)


users = User.__table__
wallets = Wallet.__table__
escrows = Escrow.__table__
invitations = Invitation.__table__
withdrawals = Withdrawal.__table__
deposits = DepositInvoice.__table__
ledger_entries = LedgerEntry.__table__
deal_events = DealEvent.__table__
notifications = Notification.__table__
platform_accounts = PlatformAccount.__table__
dispute_evidence = DisputeEvidence.__table__
user_status_changes = UserStatusChange.__table__
reputations = Reputation.__table__
ratings = Rating.__table__
