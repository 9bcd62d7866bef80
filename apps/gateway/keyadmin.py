"""`python -m apps.gateway.keyadmin`: manage API keys from the server side (talks to Redis).

create --name acme --rate 5/s --max-queued 100   prints the new key's token (shown once);
       [--max-cost 500] [--weight 2]              also a cap on the summed cost of its queued
                                                  and running jobs, and its fair-share weight
list                                              keys, without secrets
update KEY_ID [--rate 10/s] [--burst 20] [--max-active 50] [--max-cost 500|none] [--weight 2]
                                                  changes only the limits given
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
from pydantic import ValidationError

from apps.common.security.apikeys import KeyStore, parse_rate
from apps.common.service.settings import CommonSettings, get_settings


async def run(args: argparse.Namespace) -> int:
    client = aioredis.Redis.from_url(get_settings(CommonSettings).redis_url, decode_responses=True)
    try:
        return await _command(KeyStore(client), args)
    except ValidationError as exc:  # a limit no key can have: a rate of 0/s, a weight of 0
        error = exc.errors()[0]
        print(f"invalid {error['loc'][0]}: {error['msg']}", file=sys.stderr)
        return 2
    finally:
        await client.aclose()


async def _command(store: KeyStore, args: argparse.Namespace) -> int:
    if args.command == "create":
        key, token = await store.create(
            name=args.name,
            rate_per_s=parse_rate(args.rate),
            burst=args.burst,
            max_active=args.max_active,
            max_cost=args.max_cost,
            weight=args.weight,
        )
        print(json.dumps(key.public() | {"token": token}, indent=2))
    elif args.command == "update":
        # Only the options given are in `args` (their default is SUPPRESS).
        changes = {
            name: getattr(args, name)
            for name in ("burst", "max_active", "max_cost", "weight")
            if hasattr(args, name)
        }
        if hasattr(args, "rate"):
            changes["rate_per_s"] = parse_rate(args.rate)
        updated = await store.update(args.key_id, changes)
        if updated is None:
            print(f"no key {args.key_id}", file=sys.stderr)
            return 1
        print(json.dumps(updated.public(), indent=2))
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


def _max_cost(text: str) -> float | None:
    """A cost in megapixel-steps, or `none` for no cap."""
    return None if text.lower() == "none" else float(text)


def _limit_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """The limits `create` sets and `update` changes; `update` leaves out what is not given."""

    def default(value: object) -> object:
        return value if defaults else argparse.SUPPRESS

    parser.add_argument("--rate", default=default("5/s"), help="submits allowed, e.g. 5/s, 300/m")
    parser.add_argument(
        "--burst", type=int, default=default(None), help="bucket size (default 2x rate)"
    )
    parser.add_argument(
        "--max-active",
        "--max-queued",
        dest="max_active",
        type=int,
        default=default(100),
        help="jobs queued or running at once",
    )
    parser.add_argument(
        "--max-cost",
        type=_max_cost,
        default=default(None),
        help="the most its queued and running jobs may cost together, in megapixel-steps "
        "(`none`: no cap)",
    )
    parser.add_argument(
        "--weight",
        type=float,
        default=default(1.0),
        help="its share of GPU time under fair scheduling (default 1)",
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m apps.gateway.keyadmin",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="create a key")
    create.add_argument("--name", required=True)
    _limit_options(create, defaults=True)
    commands.add_parser("list", help="list keys")
    update = commands.add_parser("update", help="change a key's limits")
    update.add_argument("key_id")
    _limit_options(update, defaults=False)
    for name in ("revoke", "rotate-webhook-secret"):
        commands.add_parser(name).add_argument("key_id")
    raise SystemExit(asyncio.run(run(parser.parse_args())))


if __name__ == "__main__":
    main()
