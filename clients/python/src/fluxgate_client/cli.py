"""`fluxgate`: run jobs, follow them and manage keys from a shell."""

from __future__ import annotations

import argparse
import base64
import json
import mimetypes
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fluxgate_client._base import final_or_raise
from fluxgate_client._http import DEFAULT_URL
from fluxgate_client._previews import PreviewSaver
from fluxgate_client._progress import MODES, make_progress
from fluxgate_client.client import Fluxgate
from fluxgate_client.errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ConnectionFailed,
    FluxgateError,
    NotFoundError,
    RateLimitError,
    ServiceUnavailableError,
    TaskCanceledError,
    TaskFailedError,
    WaitTimeout,
)
from fluxgate_client.models import JobView

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_NOT_FOUND = 4
EXIT_CANCELED = 5
EXIT_TIMEOUT = 6
EXIT_UNAVAILABLE = 7
EXIT_API = 8
EXIT_INTERRUPTED = 130
# What a shell reports for a process killed by SIGPIPE: stdout's reader went away (`| head`).
EXIT_PIPE_CLOSED = 141

EPILOG = """\
exit codes:
  0  success
  1  the job failed
  2  bad input or usage error (a 422 from the server too)
  3  authentication failed (401)
  4  not found (unknown task or key)
  5  the job was canceled or expired
  6  timed out waiting (--timeout)
  7  service unavailable, rate limited after retries, or cannot connect
  8  any other API error
  141  stdout was closed early (e.g. `fluxgate watch ID | head`)

environment: FLUXGATE_URL, FLUXGATE_WS_URL, FLUXGATE_API_KEY, FLUXGATE_ADMIN_TOKEN"""

# Flag -> field of the flux input, so the common ones need no --set.
INPUT_FLAGS = {
    "width": "width",
    "height": "height",
    "steps": "num_inference_steps",
    "seed": "seed",
    "num_images": "num_images",
    "negative_prompt": "negative_prompt",
    "guidance": "guidance_scale",
    "format": "output_format",
}


def exit_code_for(exc: BaseException) -> int:
    # Order matters: the job's own outcome first, then the HTTP classes, then the catch-alls.
    table: list[tuple[type[BaseException], int]] = [
        (TaskFailedError, EXIT_FAILED),
        (TaskCanceledError, EXIT_CANCELED),
        (WaitTimeout, EXIT_TIMEOUT),
        (BadRequestError, EXIT_USAGE),
        (AuthenticationError, EXIT_AUTH),
        (NotFoundError, EXIT_NOT_FOUND),
        (ServiceUnavailableError, EXIT_UNAVAILABLE),
        (RateLimitError, EXIT_UNAVAILABLE),
        (ConnectionFailed, EXIT_UNAVAILABLE),
        (APIError, EXIT_API),
        (FluxgateError, EXIT_API),
    ]
    for kind, code in table:
        if isinstance(exc, kind):
            return code
    return EXIT_API


# --- parsing ------------------------------------------------------------------------------------


def _global_options(parser: argparse.ArgumentParser, *, in_command: bool) -> None:
    """Global options work before or after the command; inside a command they default to
    SUPPRESS so they never overwrite a value given before it."""

    def default(value: object) -> object:
        return argparse.SUPPRESS if in_command else value

    env = os.environ.get
    parser.add_argument(
        "--url",
        default=default(env("FLUXGATE_URL") or DEFAULT_URL),
        help=f"server base URL (env FLUXGATE_URL, default {DEFAULT_URL})",
    )
    parser.add_argument(
        "--ws-url",
        default=default(env("FLUXGATE_WS_URL")),
        help="WebSocket base when not on --url, e.g. ws://host:8300 (env FLUXGATE_WS_URL)",
    )
    parser.add_argument(
        "--api-key", default=default(env("FLUXGATE_API_KEY")), help="env FLUXGATE_API_KEY"
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="machine output: JSON on stdout (the final job view for run/status/cancel)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=default(None),
        help="seconds to wait for a job to end (default: no limit)",
    )
    parser.add_argument(
        "--progress",
        choices=MODES,
        default=default("auto"),
        help="progress display on stderr (auto: a bar when stderr is a terminal)",
    )


def _admin_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--admin-token",
        default=os.environ.get("FLUXGATE_ADMIN_TOKEN"),
        help="env FLUXGATE_ADMIN_TOKEN",
    )


def _image_file(text: str) -> tuple[str, str]:
    field, sep, path = text.partition("=")
    if not sep:
        field, path = "image", text
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot read {path}: {exc.strerror}") from exc
    kind = mimetypes.guess_type(path)[0] or "application/octet-stream"
    return field, f"data:{kind};base64,{base64.b64encode(data).decode()}"


def _max_cost(text: str) -> float | None:
    """A cost in megapixel-steps, or `none` (no cap)."""
    if text.lower() == "none":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or none, got {text!r}") from None


def _key_limits(parser: argparse.ArgumentParser, *, update: bool) -> None:
    """The limits `keys create` sets and `keys update` changes (only those given)."""
    unset = argparse.SUPPRESS if update else None
    parser.add_argument("--rate", default=unset, help="submits allowed, e.g. 5/s, 300/m")
    if update:
        parser.add_argument("--burst", type=int, default=unset, help="token bucket size")
    parser.add_argument(
        "--max-active",
        "--max-queued",
        dest="max_active",
        type=int,
        default=unset,
        help="jobs queued or running at once",
    )
    parser.add_argument(
        "--max-cost",
        type=_max_cost,
        default=unset,
        help="the most those jobs may cost together, in megapixel-steps"
        + (" (none: no cap)" if update else ""),
    )
    parser.add_argument(
        "--weight", type=float, default=unset, help="share of GPU time under fair scheduling"
    )


def _key_value(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(raw)
    except ValueError:
        return key, raw  # not JSON: a plain string


def build_parser() -> argparse.ArgumentParser:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="fluxgate",
        description="Run AI image jobs on a Fluxgate server and follow them live.",
        epilog=EPILOG,
        formatter_class=formatter,
    )
    _global_options(parser, in_command=False)
    common = argparse.ArgumentParser(add_help=False)
    _global_options(common, in_command=True)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str, *parents: argparse.ArgumentParser) -> Any:
        return commands.add_parser(
            name,
            help=help,
            description=help,
            parents=[common, *parents],
            epilog=EPILOG,
            formatter_class=formatter,
        )

    run = command("run", "submit a job, show its progress, save its images")
    run.add_argument("type", help="task type, e.g. flux")
    run.add_argument("prompt", nargs="?", help="the prompt")
    run.add_argument("--width", type=int)
    run.add_argument("--height", type=int)
    run.add_argument("--steps", type=int, help="num_inference_steps")
    run.add_argument("--seed", type=int)
    run.add_argument("--num-images", type=int)
    run.add_argument("--negative-prompt")
    run.add_argument("--guidance", type=float, help="guidance_scale")
    run.add_argument("--format", choices=("png", "jpeg", "webp"), help="output_format")
    run.add_argument(
        "--set",
        type=_key_value,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any input field; VALUE is read as JSON when it parses (2.5, true), else a string",
    )
    run.add_argument(
        "--image",
        type=_image_file,
        action="append",
        default=[],
        metavar="[FIELD=]PATH",
        help="an image input from a file, sent as base64 (field `image` unless named, e.g. "
        "target_image=poster.jpg); give an http(s) URL with --set image=https://...",
    )
    run.add_argument("--priority", type=int, help="0..9, 9 most urgent")
    run.add_argument("--webhook-url")
    run.add_argument(
        "--webhook-event", action="append", help="started, progress, completed (repeatable)"
    )
    run.add_argument("--cancel-after", help="give up if not done by then: 30, 30s, 5m, 1h")
    run.add_argument("--idempotency-key", help="default: a fresh one per call")
    run.add_argument(
        "-o", "--output", type=Path, help="save the image here (several: NAME-1.png, ...)"
    )
    run.add_argument(
        "--previews",
        type=Path,
        metavar="DIR",
        help="ask for live previews (sets preview: true) and save each one seen as "
        "DIR/step-NNN.webp; --set preview_every_n_steps=N picks how often",
    )

    for name, help in (
        ("status", "show a job"),
        ("cancel", "cancel a job"),
        ("watch", "print every change of a job until it ends"),
    ):
        command(name, help).add_argument("task_id")

    usage = command("usage", "jobs and compute seconds of your key")
    usage.add_argument("--since", help="first UTC day, YYYY-MM-DD")
    usage.add_argument("--until", help="last UTC day, YYYY-MM-DD")

    keys = command("keys", "manage API keys (admin token)")
    admin = argparse.ArgumentParser(add_help=False)
    _admin_options(admin)
    key_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    create = key_commands.add_parser("create", help="create a key", parents=[common, admin])
    create.add_argument("name")
    _key_limits(create, update=False)
    key_commands.add_parser("list", help="list keys", parents=[common, admin])
    update = key_commands.add_parser(
        "update", help="change a key's limits (only those given)", parents=[common, admin]
    )
    update.add_argument("key_id")
    _key_limits(update, update=True)
    revoke = key_commands.add_parser("revoke", help="revoke a key", parents=[common, admin])
    revoke.add_argument("key_id")
    return parser


# --- output -------------------------------------------------------------------------------------


def _print_json(data: Any) -> None:
    print(json.dumps(data, separators=(",", ":")))


def _summary(view: JobView) -> str:
    rows = [("task", view.task_id), ("type", view.type)]
    rows.append(("status", f"{view.status} ({view.progress}%)"))
    if view.queue_position is not None:
        rows.append(("queue", f"{view.queue_position} ahead"))
    if view.waiting_for:
        rows.append(("waiting", f"for {view.waiting_for.replace('_', ' ')}"))
    for name, at in (
        ("created", view.created_at),
        ("started", view.started_at),
        ("finished", view.finished_at),
    ):
        if at:
            rows.append((name, at))
    if view.cost is not None:
        rows.append(("cost", _cost(view.cost)))
    rows.extend(("image", str(image.get("url", ""))) for image in view.images)
    if view.error:
        rows.append(("error", f"{view.error_code}: {view.error_message}"))
    return "\n".join(f"{name:<9} {value}" for name, value in rows)


def _number(value: float) -> str:
    """Up to the 4 decimals costs are kept to, without trailing zeros."""
    return f"{value:.4f}".rstrip("0").rstrip(".")


def _cost(cost: float) -> str:
    return f"{_number(cost)} megapixel-steps"


def _event_line(view: JobView) -> str:
    line = f"{view.seq:>4} {view.event or '-':<9} {view.status:<9} {view.progress:>3}%"
    if view.queue_position is not None:
        line += f"  queue position {view.queue_position}"
    if view.waiting_for:
        line += f"  waiting for {view.waiting_for.replace('_', ' ')}"
    if view.error:
        line += f"  {view.error_code}: {view.error_message}"
    return line


def output_paths(path: Path, count: int) -> list[Path]:
    """`fox.png` for one image; `fox-1.png`, `fox-2.png`, ... for several."""
    if count <= 1:
        return [path]
    return [path.with_name(f"{path.stem}-{n}{path.suffix}") for n in range(1, count + 1)]


# --- commands -----------------------------------------------------------------------------------


def _input_of(args: argparse.Namespace) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if args.prompt is not None:
        fields["prompt"] = args.prompt
    for flag, field in INPUT_FLAGS.items():
        value = getattr(args, flag)
        if value is not None:
            fields[field] = value
    if args.previews is not None:
        fields["preview"] = True
    fields.update(dict(args.set))
    fields.update(dict(args.image))
    return fields


def _follow(
    client: Fluxgate,
    args: argparse.Namespace,
    task_id: str,
    also: Callable[[JobView], None] | None = None,
) -> JobView:
    progress = make_progress(args.progress, sys.stderr)

    def update(view: JobView) -> None:
        progress.update(view)
        if also is not None:
            also(view)

    try:
        return client.wait(task_id, args.timeout, on_update=update)
    except KeyboardInterrupt:
        progress.close()
        print(f"interrupted; task {task_id} goes on (fluxgate cancel {task_id})", file=sys.stderr)
        raise
    finally:
        progress.close()


def cmd_run(client: Fluxgate, args: argparse.Namespace) -> int:
    previews = None
    if args.previews is not None:
        try:
            args.previews.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _UsageError(f"cannot create {args.previews}: {exc.strerror}") from exc
        previews = PreviewSaver(client, args.previews)
    submitted = client.submit(
        args.type,
        _input_of(args),
        priority=args.priority,
        webhook_url=args.webhook_url,
        webhook_events=args.webhook_event,
        cancel_after=args.cancel_after,
        idempotency_key=args.idempotency_key,
    )
    # On stderr, so stdout stays the images (or the JSON view) for a pipe.
    print(f"task {submitted.task_id} submitted", file=sys.stderr, flush=True)
    view = _follow(client, args, submitted.task_id, None if previews is None else previews.update)
    if previews is not None:
        print(f"{len(previews.saved)} preview(s) saved in {args.previews}", file=sys.stderr)
    if args.json:
        _print_json(view.raw)
    elif view.cost is not None:
        print(f"task {view.task_id} {view.status}, cost {_cost(view.cost)}", file=sys.stderr)
    final_or_raise(view)
    if args.output is None:
        if not args.json:
            print("\n".join(str(image.get("url", "")) for image in view.images))
        return EXIT_OK
    for index, path in enumerate(output_paths(args.output, len(view.images))):
        client.save_image(view, path, index)
        if not args.json:
            print(path)
    return EXIT_OK


def cmd_status(client: Fluxgate, args: argparse.Namespace) -> int:
    view = client.get(args.task_id)
    if args.json:
        _print_json(view.raw)
    else:
        print(_summary(view))
    return EXIT_OK


def cmd_cancel(client: Fluxgate, args: argparse.Namespace) -> int:
    view = client.cancel(args.task_id)
    if args.json:
        _print_json(view.raw)
    elif view.status == "running":
        print(f"cancel requested: task {view.task_id} stops at its next step")
    else:
        print(f"task {view.task_id} {view.status}")
    return EXIT_OK


def cmd_watch(client: Fluxgate, args: argparse.Namespace) -> int:
    def show(view: JobView) -> None:
        # Flushed per line: a pipe reader (`| jq`) sees each change as it happens.
        print(json.dumps(view.raw) if args.json else _event_line(view), flush=True)

    final_or_raise(client.wait(args.task_id, args.timeout, on_update=show))
    return EXIT_OK


def cmd_usage(client: Fluxgate, args: argparse.Namespace) -> int:
    report = client.usage(args.since, args.until)
    print(json.dumps(report, separators=(",", ":")) if args.json else json.dumps(report, indent=2))
    return EXIT_OK


def cmd_keys(client: Fluxgate, args: argparse.Namespace) -> int:
    if not args.admin_token:
        raise _UsageError("an admin token is needed: --admin-token or FLUXGATE_ADMIN_TOKEN")
    admin = client.admin(args.admin_token)
    if args.keys_command == "create":
        key = admin.create_key(
            args.name,
            rate=args.rate,
            max_active=args.max_active,
            max_cost=args.max_cost,
            weight=args.weight,
        )
        if args.json:
            _print_json(key)
        else:
            print(f"created key {key.get('id')} ({key.get('name')})")
            print(f"token: {key.get('token')}  (shown this once)")
    elif args.keys_command == "list":
        keys = admin.list_keys()
        if args.json:
            _print_json(keys)
        else:
            for key in keys:
                print(f"{key.get('id')}  {key.get('name')}  ({_limits(key)})")
    elif args.keys_command == "update":
        limits = {
            name: getattr(args, name)
            for name in ("rate", "burst", "max_active", "max_cost", "weight")
            if hasattr(args, name)
        }
        key = admin.update_key(args.key_id, **limits)
        if args.json:
            _print_json(key)
        else:
            print(f"updated key {key.get('id')} ({_limits(key)})")
    else:
        admin.revoke_key(args.key_id)
        if args.json:
            _print_json({"revoked": args.key_id})
        else:
            print(f"revoked {args.key_id}")
    return EXIT_OK


def _limits(key: dict[str, Any]) -> str:
    limits = f"{key.get('rate_per_s')}/s, at most {key.get('max_active')} active"
    if key.get("max_cost") is not None:
        limits += f", their cost at most {_number(key['max_cost'])}"
    return limits + f", weight {_number(key.get('weight', 1))}"


class _UsageError(Exception):
    pass


COMMANDS: dict[str, Callable[[Fluxgate, argparse.Namespace], int]] = {
    "run": cmd_run,
    "status": cmd_status,
    "cancel": cmd_cancel,
    "watch": cmd_watch,
    "usage": cmd_usage,
    "keys": cmd_keys,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with Fluxgate(args.url, args.api_key, ws_url=args.ws_url) as client:
            return COMMANDS[args.command](client, args)
    except _UsageError as exc:
        parser.error(str(exc))  # exits 2, like any other usage error
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader has what it wanted. Point stdout at /dev/null so the interpreter's own
        # flush at exit does not raise again (the Python docs' recipe for SIGPIPE).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_PIPE_CLOSED
    except FluxgateError as exc:
        print(f"fluxgate: error: {exc}", file=sys.stderr)
        if isinstance(exc, WaitTimeout) and exc.task_id:
            # Waiting gave up, the job did not: say how to pick it up again.
            print(
                f"fluxgate: the job goes on; `fluxgate watch {exc.task_id}` follows it, "
                f"`fluxgate cancel {exc.task_id}` stops it",
                file=sys.stderr,
            )
        return exit_code_for(exc)


if __name__ == "__main__":
    sys.exit(main())
