"""The worker: Celery tasks that run jobs through the balancer and report them to the notifier."""
