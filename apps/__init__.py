"""Fluxgate: serve AI image jobs to many clients on a pool of GPU model servers."""
