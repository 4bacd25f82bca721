"""The machinery of the ssh plan, split by where it runs.

Caller side: :mod:`.bundle` (the code shipped to hosts; which of the caller's modules
travel by value is :mod:`cheerful.byvalue`'s), :mod:`.link` (one host's ssh process and frames) and
:mod:`.pool` (the :class:`~cheerful.pool.Pool` over every host). Host side:
:mod:`.boot` (sent as text; unpacks the code) and :mod:`.agent` (relays chunks to local
workers). :mod:`.wire` is the frame format both sides speak.
"""
