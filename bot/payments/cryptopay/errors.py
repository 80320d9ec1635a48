"""Crypto Pay's failures, in the two kinds callers must tell apart: a definite refusal
(`CryptoPayError`) and an unknown outcome (`CryptoPayUnavailable`)."""

from __future__ import annotations


class ErrorName:
    """Error names Crypto Pay answers with that callers act on."""

    UNAUTHORIZED = "UNAUTHORIZED"
    INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"
    SPEND_ID_ALREADY_USED = "SPEND_ID_ALREADY_USED"


class CryptoPayException(Exception):
    """Any failure of a Crypto Pay call."""

    def __init__(self, method: str, detail: str) -> None:
        super().__init__(f"{method}: {detail}")
        self.method = method


class CryptoPayError(CryptoPayException):
    """Crypto Pay refused the call (``ok: false``): nothing was done."""

    def __init__(self, method: str, code: int, name: str) -> None:
        super().__init__(method, f"[{code}] {name}")
        self.code = code
        self.name = name


class CryptoPayUnavailable(CryptoPayException):
    """The call's outcome is unknown: it may or may not have taken effect."""
