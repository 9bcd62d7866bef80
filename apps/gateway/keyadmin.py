"""`python -m apps.gateway.keyadmin`: manage API keys from the server side (talks to Redis).

create --name acme --rate 5/s --max-queued 100   prints the new key's token (shown once)
list                                              keys, without secrets
revoke KEY_ID
rotate-webhook-secret KEY_ID                      prints the new secret; the old one signs
                                                  for 24 h more
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

import redis.asyncio as aioredis

from apps.common.security.apikeys import KeyStore, parse_rate
from apps.common.service.settings import CommonSettings, get_settings


async def run(args: argparse.Namespace) -> int:
    client = aioredis.Redis.from_url(get_settings(CommonSettings).redis_url, decode_responses=True)
    store = KeyStore(client)
    try:
        if args.command == "create":
            key, token = await store.create(
                name=args.name,
                rate_per_s=parse_rate(args.rate),
                burst=args.burst,
                max_active=args.max_active,
            )
            print(json.dumps(key.public() | {"token": token}, indent=2))
        elif args.command == "list":
            print(json.dumps([key.public() for key in await store.all()], indent=2))
        elif args.command == "revoke":
            if not await store.revoke(args.key_id):
                print(f"no key {args.key_id}", file=sys.stderr)
                return 1
            print(json.dumps({"revoked": args.key_id}))
        elif args.command == "rotate-webhook-secret":
            secret = await store.rotate_webhook_secret(args.key_id)
            if secret is None:
                print(f"no key {args.key_id}", file=sys.stderr)
                return 1
            print(json.dumps({"key_id": args.key_id, "webhook_secret": secret}))
        return 0
    finally:
        await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m apps.gateway.keyadmin",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="create a key")
    create.add_argument("--name", required=True)
    create.add_argument("--rate", default="5/s", help="submits allowed, e.g. 5/s, 300/m")
    create.add_argument("--burst", type=int, default=None, help="bucket size (default 2x rate)")
    create.add_argument(
        "--max-active",
        "--max-queued",
        dest="max_active",
        type=int,
        default=100,
        help="jobs queued or running at once",
    )
    commands.add_parser("list", help="list keys")
    for name in ("revoke", "rotate-webhook-secret"):
        commands.add_parser(name).add_argument("key_id")
    raise SystemExit(asyncio.run(run(parser.parse_args())))


if __name__ == "__main__":
    main()
