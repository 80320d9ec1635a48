"""Every Redis key and channel name the cache uses, under one prefix.

Keys live in slot groups: `SLOT_GROUPS` hash tags (`{g<group>.<n>}`), and a
user's keys all carry their group's tag (the group is the Telegram id modulo
`SLOT_GROUPS`). Redis Cluster puts every key with one tag in one hash slot,
so whatever a Lua script or a MULTI touches together is in one group:

- `<prefix>:{tag}:snapshot:<telegram_id>`: one user's snapshot entry or
  tombstone (see `cache.snapshots`), a plain string so an L2 hit is one GET;
- `<prefix>:{tag}:generation`: the group's cache generation, beside the
  entries it governs (the set-if-newer script reads both); bumping it disowns
  every entry of the group written before. A reset (invalidations were lost,
  another database) bumps every group's; each group moves on its own, the
  entries carry the generation they were written under;
- `<prefix>:{tag}:redis_run`: the run_id of the Redis process the group's
  entries were written to (another one, restarted from saved data or failed
  over to, disowns them when a listener connects to it). On a cluster each
  group is checked against the master that holds it now, so a failover of one
  shard disowns what that shard holds and nothing else;
- `<prefix>:{tag}:update:<update_id>`: an update some replica took (webhook
  mode drops a redelivered one), tagged with its user's group (the update of
  a user with no user: its own id's), so the update's lease, the user's lock
  and form, taken and read in one script, share a slot;
- `<prefix>:fsm:{tag}:<bot>:<chat>:<user>:state` and `:data`: a user's form,
  its step and its data (aiogram's layout and JSON, 24 h, the tag of the
  user's group after our prefix: `bot.telegram.fsm.FormKeyBuilder`), read together (one MGET,
  or with the update's lease) and written together (one MULTI); `:lock`
  beside them: the user's lock in webhook mode.

Keys used alone need no tag: `<prefix>:database` (which database the entries
were loaded from; another one disowns them at start-up), `<prefix>:job:<name>`
(who runs a background job this tick) and `<prefix>:webhook` (and `:lock`,
the webhook configuration set).
The fleet's budget for what the bot sends on its own (bot/runtime/shared_pace.py)
is `<prefix>:{pace}:all` and `<prefix>:{pace}:chat:<id>`: one tag of its own,
so its script touches the overall budget and a chat's in one slot.

Channels: one Redis uses `<prefix>:invalidations` with PUBLISH; a cluster has
a sharded channel per group, `<prefix>:{tag}:invalidations` (SPUBLISH), so an
invalidation goes to the shard that holds the user's entry, not to every node,
and keeps its order with the user's other messages.

Why the tags are picked rather than `{<group>}`: a tag's slot is a hash, and
16 hashed slots can fall unevenly on three masters. Group `g`'s tag is the
first whose slot lies in the `g`-th sixteenth of the slot space, and a
cluster created by `redis-cli --cluster create` gives each master an equal
run of slots, so the groups (and the load) split evenly. 16 groups keep the
reset and the run check (one command per group, pipelined) cheap, and are
enough for up to 16 masters; more would need more groups.

One layout serves one Redis and a cluster alike, at no cost per update (a
read is one GET, a fill one EVALSHA, a publish one pipeline as before).
Upgrading from the layout without tags loses nothing that matters: the old
entries, generation and run_id are simply not read again (the first reads
are misses, loaded from Postgres and filled under the new names) and expire
with their TTL; a form open across the upgrade starts over; an old update
key no longer dedups a redelivery of its update, whose writes are guarded in
the database anyway.
"""

from __future__ import annotations

from functools import cache

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

SLOT_GROUPS = 16


@cache
def group_tags() -> tuple[str, ...]:
    """Each group's hash tag, its slot in its own sixteenth of the slot space."""
    width = REDIS_CLUSTER_HASH_SLOTS // SLOT_GROUPS
    tags: list[str | None] = [None] * SLOT_GROUPS
    n = 0
    while None in tags:
        for group in range(SLOT_GROUPS):
            tag = f"g{group}.{n}"
            if tags[group] is None and key_slot(tag.encode()) // width == group:
                tags[group] = tag
        n += 1
    return tuple(tag for tag in tags if tag is not None)


def group_of(number: int) -> int:
    """The slot group of a user (by Telegram id), a deal or an update."""
    return number % SLOT_GROUPS


def tag_of(number: int) -> str:
    """The hash tag (braces included) of `number`'s group."""
    return f"{{{group_tags()[group_of(number)]}}}"


class CacheKeys:
    __slots__ = ("channel", "database", "generations", "prefix", "redis_runs", "tags")

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.tags = tuple(f"{prefix}:{{{tag}}}" for tag in group_tags())
        self.generations = tuple(f"{tag}:generation" for tag in self.tags)
        self.redis_runs = tuple(f"{tag}:redis_run" for tag in self.tags)
        self.channel = f"{prefix}:invalidations"
        self.database = f"{prefix}:database"

    def snapshot(self, telegram_id: int) -> str:
        return f"{self.tags[group_of(telegram_id)]}:snapshot:{telegram_id}"

    def shard_channel(self, group: int) -> str:
        """The group's sharded invalidation channel (Redis Cluster)."""
        return f"{self.tags[group]}:invalidations"

    def update(self, update_id: int, telegram_id: int | None = None) -> str:
        group = group_of(telegram_id if telegram_id is not None else update_id)
        return f"{self.tags[group]}:update:{update_id}"

    @property
    def forms(self) -> str:
        """The prefix of the form keys (aiogram's key builder adds the rest)."""
        return f"{self.prefix}:fsm"

    def job(self, name: str) -> str:
        return f"{self.prefix}:job:{name}"

    def pace(self, chat_id: int | str | None) -> str:
        """The fleet's overall send budget (None) or one chat's."""
        tail = "all" if chat_id is None else f"chat:{chat_id}"
        return f"{self.prefix}:{{pace}}:{tail}"

    @property
    def webhook(self) -> str:
        return f"{self.prefix}:webhook"
