"""Deal use cases, one module per concern; `DealService` is all of them.

- `lifecycle`: read, create, and the parties' actions;
- `invitations`: joining by link;
- `settlement`: an admin settling a dispute;
- `evidence`: what the parties send about a dispute, and its file for admins;
- `timers`: expiry and reminders;
- `steps`: what they share (lock, transition, money).
"""

from bot.services.deals.evidence import DealEvidence
from bot.services.deals.invitations import DealInvitations
from bot.services.deals.lifecycle import DealLifecycle
from bot.services.deals.settlement import DealSettlement
from bot.services.deals.steps import bounded_text, normalise_code
from bot.services.deals.timers import DealTimers


class DealService(DealLifecycle, DealInvitations, DealSettlement, DealEvidence, DealTimers):
    """Every deal use case over one service context."""


__all__ = ["DealService", "bounded_text", "normalise_code"]
