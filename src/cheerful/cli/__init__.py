"""The ``cheerful`` command line (``cheerful.cli:main``); see :mod:`.main`."""

from .main import main

__all__ = ["main"]
