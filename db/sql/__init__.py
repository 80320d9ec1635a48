"""The product's SQL, one module per aggregate, each statement written once.

- `users`: registration, lookups, the cache's snapshot statement;
- `ledger`: wallets and the movements that change them;
- `deals`: a deal's reads and steps (lock, transition, create, expiry) and
  the invitations it is joined by;
- `withdrawals`, `deposits`: money leaving and entering;
- `notifications`: the outbox, and the `notified` CTE the others compose;
- `reputation`: the record's counters, the `counted` CTE a deal's transition
  composes; `ratings`: a completed deal's ratings and reviews;
- `reads`: lists, pages and admin queues (with the `admin_only` gate);
- `hot`: the registry of what runs on the hot paths and the index each uses;
- `ops`: health checks, migration locks and the doctor's reads;
- `dataset`: the benchmark's data set and the seed's ORM pattern it measures.

A statement that also writes another aggregate's rows (a deal change and its
notifications) composes that aggregate's named fragment, never a copy of it.
"""
