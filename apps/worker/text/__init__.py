"""Text work for the worker's task handlers: prompt refinement and translation (no Celery, no HTTP).

Importing this package is cheap: torch and transformers load only when a translator is built.
"""
