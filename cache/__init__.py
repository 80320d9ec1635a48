"""User snapshots cached in-process (L1) and in Redis (L2), kept consistent by
invalidation events published after commit. Never imports `bot/`."""
