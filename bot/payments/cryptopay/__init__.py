"""Crypto Pay, the payment API of @CryptoBot: a thin async client (`client`), its typed
results (`results`), amounts (`amounts`), failures (`errors`) and webhook (`webhook`).

The contract this client relies on (https://help.crypt.bot/crypto-pay-api):

- Every method is ``https://pay.crypt.bot/api/<method>`` (testnet:
  ``https://testnet-pay.crypt.bot/api/<method>``), called here as a POST with
  a JSON body; the app's token travels in the ``Crypto-Pay-API-Token`` header.
- Every answer is JSON: ``{"ok": true, "result": ...}`` or
  ``{"ok": false, "error": {"code": 400, "name": "INSUFFICIENT_FUNDS"}}``.
- Amounts are decimal strings both ways (``"12.5"``). They stay ``Decimal``
  here and become integer minor units only through :func:`to_minor_units`.
- ``createInvoice`` (asset, amount, payload, expires_in, description) returns
  an Invoice whose ``status`` is ``active``, then ``paid`` or ``expired``; the
  payer may pay in another asset (``paid_asset``/``paid_amount``).
  ``getInvoices`` (invoice_ids comma-separated, status) answers
  ``{"items": [...]}``.
- ``transfer`` (user_id, asset, amount, spend_id, comment) sends coins from
  the app's balance to a Telegram user. ``spend_id`` makes it idempotent: a
  second transfer with a used ``spend_id`` is refused
  (``SPEND_ID_ALREADY_USED``), so a payout that may or may not have happened
  is resolved by ``getTransfers(spend_id=...)``, never by sending again with a
  new id. ``getBalance`` lists ``currency_code``/``available``/``onhold``.
- Webhooks: an ``invoice_paid`` update is POSTed with the header
  ``crypto-pay-api-signature``, the hex HMAC-SHA-256 of the raw body keyed
  with the SHA-256 digest of the app token (:func:`verify_signature`).

Failures come in two kinds, and callers must tell them apart:
:class:`CryptoPayError` is a definite refusal (Crypto Pay answered
``ok: false`` with a non-5xx status: nothing was done), and
:class:`CryptoPayUnavailable` means the outcome is unknown (timeout,
connection error, 5xx, an answer that is not the documented shape): a
transfer may have happened. The client never retries; callers reconcile.
"""
