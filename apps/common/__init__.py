"""Code shared by every Fluxgate service, grouped by what each module is.

- `wire/`: what crosses a process boundary (pydantic contracts, Celery task and queue names, the
  broker message the gateway writes).
- `jobs/`: the job record, its store, its public view, its place in the queue, and what follows an
  applied event (publish, meter, observe, webhook).
- `redis/`: Redis key names, the client factory and shared Lua pieces.
- `storage/`: where outputs and uploaded inputs live (a directory or S3) and how they are named.
- `security/`: API keys, signatures (webhooks, internal calls) and the SSRF guard.
- `service/`: settings, logging, tracing, request ids, the error vocabulary and the HTTP app
  plumbing every service uses.
- `task_types/`: one module per task type (name, input model, queue, where it runs).
- `images.py`: decoding, checking and encoding images.
"""
