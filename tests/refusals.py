"""A refusal as the user reads it, for tests that assert what a use case says."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from bot.telegram.refusals import CurrencyLookup, refusal_text


@contextmanager
def refuses(
    kind: type[BaseException], said: str, currencies: CurrencyLookup
) -> Iterator[pytest.ExceptionInfo]:
    """Like `pytest.raises(kind, match=said)`, matched against the sentence the
    refusal is shown as (`said` is a regular expression, searched)."""
    with pytest.raises(kind) as caught:
        yield caught
    text = refusal_text(caught.value, currencies)  # type: ignore[arg-type]
    assert re.search(said, text), f"{text!r} does not say {said!r}"
