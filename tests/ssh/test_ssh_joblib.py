"""scikit-learn's ``n_jobs`` on two SSH hosts through the ``"cheerful"`` joblib backend:
the same ``cv_results_`` scores as joblib's own backend on this machine."""

from __future__ import annotations

import numpy as np
import pytest

import cheerful as cf
from ssh_servers import ssh_plan

pytest.importorskip("sklearn")

import cheerful.joblib  # noqa: E402, F401 - registers the backend
from test_joblib import SCORES, grid_search  # noqa: E402


def test_grid_search_on_two_hosts_gives_the_scores_of_joblibs_own_backend(ssh_keys, two_hosts):
    expected = grid_search("loky")
    with cf.plan(ssh_plan(ssh_keys, [h.host for h in two_hosts], workers_per_host=2)):
        got = grid_search("cheerful")
    for key in SCORES:
        assert np.array_equal(got[key], expected[key]), key
