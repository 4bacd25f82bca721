"""Stores of opaque byte values under '/'-separated keys; see :mod:`cheerful.durable.stores.base`."""

from .base import Store, validate_key, validate_prefix

__all__ = ["Store", "validate_key", "validate_prefix"]
