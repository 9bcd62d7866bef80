"""Tests of the worker's pure image operations."""
