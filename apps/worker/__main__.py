"""`python -m apps.worker`: a Celery worker for the given queues (default: all)."""

from __future__ import annotations

import argparse

from apps.common.wire.queues import ALL_QUEUES


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m apps.worker",
        description="Fluxgate worker: runs jobs from the Celery queues through the balancer.",
    )
    parser.add_argument(
        "--queues",
        default=",".join(ALL_QUEUES),
        help="comma-separated queues to consume (default: %(default)s)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="worker processes (default: FLUXGATE_WORKER_CONCURRENCY)",
    )
    parser.add_argument(
        "--hostname", default=None, help="Celery node name (default: fluxgate@host)"
    )
    parser.add_argument("--loglevel", default="INFO")
    args = parser.parse_args()

    # Before anything imports prometheus-client: pool processes then count into shared files.
    from apps.worker.metrics_dir import prepare_multiprocess_dir

    prepare_multiprocess_dir()
    from apps.worker.celery_app import app

    argv = [
        "worker",
        "--queues",
        args.queues,
        "--loglevel",
        args.loglevel,
        "--without-mingle",
        "--without-gossip",
        "--hostname",
        args.hostname or "fluxgate@%h",
    ]
    if args.concurrency is not None:
        argv += ["--concurrency", str(args.concurrency)]
    app.worker_main(argv)


main()
