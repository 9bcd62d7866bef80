"""The services' asyncio Redis client packs commands with hiredis: byte for byte what redis-py's
own packer writes, for every kind of argument the services send, and it refuses the same."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio.connection import Connection
from redis.exceptions import DataError

from apps.common.redis.client import async_redis

ARGUMENTS = [
    ("SET", "fluxgate:job:abc", "value"),
    ("EVALSHA", "a" * 40, 2, "k1", "k2", 0.6, 1764442244.7345622, -3, 10**15, "é", b"\x00\xff"),
    ("SCRIPT LOAD", "return 1"),
    (b"CONFIG GET", b"maxmemory"),
    ("HSET", "k", "big", "x" * 20_000),
    ("SET", "k", memoryview(b"view")),
]


def packed(connection: Connection, args: tuple[Any, ...]) -> bytes:
    return b"".join(bytes(part) for part in connection.pack_command(*args))


@pytest.mark.parametrize("args", ARGUMENTS, ids=lambda a: str(a[0]))
def test_lean_packing_equals_redis_pys(args: tuple[Any, ...]) -> None:
    client = async_redis("redis://127.0.0.1:1/0")
    lean = client.connection_pool.connection_class()
    assert type(lean) is not Connection and isinstance(lean, Connection)
    assert packed(lean, args) == packed(Connection(), args)


@pytest.mark.parametrize("bad", [None, True, object()])
def test_lean_packing_refuses_what_redis_py_refuses(bad: Any) -> None:
    lean = async_redis("redis://127.0.0.1:1/0").connection_pool.connection_class()
    with pytest.raises(DataError):
        lean.pack_command("SET", "k", bad)
    with pytest.raises(DataError):
        Connection().pack_command("SET", "k", bad)


def test_a_unix_socket_url_keeps_its_connection_class() -> None:
    pool = async_redis("unix:///tmp/redis.sock").connection_pool
    assert pool.connection_class.__name__ == "LeanUnixDomainSocketConnection"
