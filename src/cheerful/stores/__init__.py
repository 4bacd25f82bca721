"""Stores of opaque byte values under '/'-separated keys; see :mod:`cheerful.stores.base`."""

from cheerful.stores.base import Store, validate_key, validate_prefix

__all__ = ["Store", "validate_key", "validate_prefix"]
