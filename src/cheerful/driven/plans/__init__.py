"""Driven execution: plans that run tasks for a calling process (see :mod:`.base`)."""
