"""The invalidation channels: how a message is published and how a listener
hears them (cache/listener.py decides what to do with what it hears).

One Redis: every message on `<prefix>:invalidations` (PUBLISH, SUBSCRIBE).

Redis Cluster: a sharded channel per slot group (SPUBLISH, SSUBSCRIBE; see
cache/keys.py), each message on its subject's group (a user's, a deal's, or
the group a reset is about), so a publish goes to one shard only and keeps its
order with the tombstones written in the same pipeline. Every listener
subscribes to all of them, through redis-py's ClusterPubSub (one connection
per master). ClusterPubSub mends itself quietly (it reconnects, and moves a
channel to the master that holds it after a failover); a mended subscription
may have missed messages, so any such change ends the listener's session, as
a dropped connection does on one Redis.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterNode, ClusterPubSub
from redis.exceptions import ConnectionError as RedisConnectionError

from cache.keys import SLOT_GROUPS, CacheKeys, group_of
from cache.messages import CacheReset, Message, encode_messages
from db.events import UserChanged


def group_of_message(message: Message) -> int:
    if isinstance(message, UserChanged):
        return group_of(message.telegram_id)
    if isinstance(message, CacheReset):
        return message.group
    return group_of(message.deal_id)


def queue_publish(pipe: Any, keys: CacheKeys, sharded: bool, messages: tuple[Message, ...]) -> None:
    """Put the PUBLISH (on a cluster, an SPUBLISH per slot group) of `messages`
    on a pipeline."""
    if not sharded:
        pipe.publish(keys.channel, encode_messages(messages))
        return
    by_group: defaultdict[int, list[Message]] = defaultdict(list)
    for message in messages:
        by_group[group_of_message(message)].append(message)
    for group, grouped in by_group.items():
        pipe.spublish(keys.shard_channel(group), encode_messages(tuple(grouped)))


async def publish(redis: Redis, keys: CacheKeys, messages: tuple[Message, ...]) -> None:
    """Publish `messages` in one pipeline (one round trip per master touched)."""
    pipe = redis.pipeline(transaction=False)
    queue_publish(pipe, keys, isinstance(redis, RedisCluster), messages)
    await pipe.execute()


class ChannelFeed:
    """The one channel of one Redis, over a plain PubSub."""

    def __init__(self, redis: Redis, keys: CacheKeys, ping_seconds: float) -> None:
        self._pubsub: PubSub = redis.pubsub()
        self._channel = keys.channel
        self._ping_seconds = ping_seconds
        self._reconnected = False
        self._heard = False
        self._ping_sent: float | None = None

    async def subscribe(self) -> None:
        pubsub = self._pubsub
        await pubsub.subscribe(self._channel)
        async with asyncio.timeout(self._ping_seconds * 2 + 1):
            while True:
                message = await pubsub.get_message(timeout=self._ping_seconds)
                if message is not None and message["type"] == "subscribe":
                    break
        # redis-py reconnects a pubsub connection by itself on the next read;
        # a silent reconnect could hide lost messages, so it ends the session.
        pubsub.connection.register_connect_callback(self._on_reconnect)  # type: ignore[union-attr]

    def _on_reconnect(self, connection: Any) -> None:
        self._reconnected = True

    async def next(self) -> bytes | None:
        """The next invalidation message's data, if one comes within `ping_seconds`."""
        message = await self._pubsub.get_message(timeout=self._ping_seconds)
        if self._reconnected:
            raise RedisConnectionError("the pubsub connection was re-established")
        if message is None:
            return None
        self._heard = True
        self._ping_sent = None  # the connection is alive
        return message["data"] if message["type"] == "message" else None

    async def tick(self, now: float) -> None:
        """Every `ping_seconds`: a PING when nothing was heard; no PONG by the
        next tick ends the session (a silent partition)."""
        if self._ping_sent is not None and now - self._ping_sent > self._ping_seconds:
            raise RedisConnectionError("no PONG from Redis")
        if self._ping_sent is None and not self._heard:
            await self._pubsub.ping()
            self._ping_sent = now
        self._heard = False

    async def aclose(self) -> None:
        if self._pubsub.connection is not None:
            self._pubsub.connection.deregister_connect_callback(self._on_reconnect)
        await self._pubsub.aclose()


class ShardedFeed:
    """Every slot group's sharded channel of a Redis Cluster, over ClusterPubSub.

    Each master's subscription is read by a task of its own: ClusterPubSub's
    own reader polls the masters in turn, each for a share of the wait, so a
    message could sit on one master while another is waited on."""

    def __init__(self, redis: RedisCluster, keys: CacheKeys, ping_seconds: float) -> None:
        self._redis = redis
        self._pubsub: ClusterPubSub = redis.pubsub()
        self._channels = [keys.shard_channel(group) for group in range(SLOT_GROUPS)]
        self._ping_seconds = ping_seconds
        self._reconnected = False
        # per master: its pubsub and connection as subscribed, and a PING out
        self._nodes: dict[str, tuple[PubSub, Any]] = {}
        self._pings: dict[bytes, float] = {}
        self._heard: asyncio.Queue[dict[str, Any] | BaseException] = asyncio.Queue()
        self._readers: list[asyncio.Task[None]] = []

    async def subscribe(self) -> None:
        # The slot map as it is now (after a failover the old one leads to a
        # dead master), then each channel on the master that holds it.
        await self._redis.nodes_manager.initialize()
        pubsub = self._pubsub
        await pubsub.ssubscribe(*self._channels)
        confirmed = 0
        async with asyncio.timeout(self._ping_seconds * 2 + 1):
            while confirmed < len(self._channels):
                message = await pubsub.get_sharded_message(timeout=self._ping_seconds)
                if message is not None and message["type"] == "ssubscribe":
                    confirmed += 1
        for name, node_pubsub in pubsub.node_pubsub_mapping.items():
            connection, node = node_pubsub.connection, self._redis.get_node(node_name=name)
            if connection is None or node is None:
                raise RedisConnectionError(f"no sharded subscription on {name}")
            connection.register_connect_callback(self._on_reconnect)
            self._nodes[name] = (node_pubsub, connection)
            self._readers.append(asyncio.get_running_loop().create_task(self._read(node)))

    async def _read(self, node: ClusterNode) -> None:
        try:
            while True:
                message = await self._pubsub.get_sharded_message(
                    target_node=node, timeout=self._ping_seconds
                )
                if message is not None:
                    self._heard.put_nowait(message)
        except Exception as exc:  # the session ends with it
            self._heard.put_nowait(exc)

    def _on_reconnect(self, connection: Any) -> None:
        self._reconnected = True

    def _check(self) -> None:
        """A shard reconnected or its channels moved (a failover): messages
        may have been missed there."""
        if self._reconnected:
            raise RedisConnectionError("a sharded subscription was re-established")
        mapping = self._pubsub.node_pubsub_mapping
        if mapping.keys() != self._nodes.keys() or any(
            mapping[name] is not node_pubsub or node_pubsub.connection is not connection
            for name, (node_pubsub, connection) in self._nodes.items()
        ):
            raise RedisConnectionError("sharded subscriptions moved between masters")

    async def next(self) -> bytes | None:
        self._check()
        try:
            async with asyncio.timeout(self._ping_seconds):
                message = await self._heard.get()
        except TimeoutError:
            return None
        if isinstance(message, BaseException):
            raise message
        self._check()
        if message["type"] == "pong":
            self._pings.pop(message["data"], None)
            return None
        return message["data"] if message["type"] == "smessage" else None

    async def tick(self, now: float) -> None:
        """Every `ping_seconds` a PING to each master, named after it: one not
        answered by the next tick ends the session (a master gone silent
        does not stop the others' messages)."""
        if any(now - sent > self._ping_seconds for sent in self._pings.values()):
            raise RedisConnectionError("no PONG from a master")
        for name, (node_pubsub, _) in self._nodes.items():
            tag = name.encode()
            if tag not in self._pings:
                await node_pubsub.ping(tag)
                self._pings[tag] = now

    async def aclose(self) -> None:
        readers, self._readers = self._readers, []
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        for _, connection in self._nodes.values():
            connection.deregister_connect_callback(self._on_reconnect)
        await self._pubsub.aclose()


def feed(redis: Redis, keys: CacheKeys, ping_seconds: float) -> ChannelFeed | ShardedFeed:
    if isinstance(redis, RedisCluster):
        return ShardedFeed(redis, keys, ping_seconds)
    return ChannelFeed(redis, keys, ping_seconds)
