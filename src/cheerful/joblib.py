"""``import cheerful.joblib`` registers the ``"cheerful"`` joblib backend.

    import joblib
    import cheerful.joblib  # noqa: F401

    with cf.plan(cf.ssh(["node1", "node2"])), joblib.parallel_config(backend="cheerful"):
        search.fit(X, y)  # scikit-learn's n_jobs run on the plan's workers

See :mod:`cheerful.driven.joblib_backend`.
"""

from __future__ import annotations

from cheerful.driven.joblib_backend import NAME, CheerfulBackend, register

__all__ = ["NAME", "CheerfulBackend", "register"]

register()
