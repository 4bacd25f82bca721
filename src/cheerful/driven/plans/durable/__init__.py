"""The durable plan: ``cf.map`` and ``cf.Executor`` over a durable backend (see :mod:`.plan`)."""
