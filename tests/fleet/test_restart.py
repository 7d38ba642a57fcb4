"""The server restarted between rounds: `edgefdfa fleet server --resume` starts a new SuperLink
on the same port; the devices' `edgefdfa fleet client` start their SuperNodes again (a SuperNode
ends when its SuperLink goes away) and join it, and the rounds go on
from the last saved global head with the devices' places in their streams kept."""

from __future__ import annotations

import numpy as np

import edgefdfa

from conftest import SAMPLES, wait_until


def test_a_restarted_server_resumes_from_its_saved_global_head(fleet):
    nodes = [fleet.client(d) for d in (0, 1)]
    first = fleet.server("srv", "--rounds", "1", "--min-nodes", "2")
    wait_until("the first run", lambda: first.poll() is not None, timeout=90)
    assert first.returncode == 0, (fleet.tmp / "srv.err").read_text()[-2000:]
    saved = edgefdfa.load_checkpoint(fleet.tmp / "srv" / "global.npz").learner.get_params()

    again = fleet.server("srv", "--rounds", "2", "--min-nodes", "2", "--resume")
    wait_until("the resumed run", lambda: again.poll() is not None, timeout=90, procs=tuple(nodes))
    assert again.returncode == 0, (fleet.tmp / "srv.err").read_text()[-2000:]

    rounds = fleet.history("srv")
    assert [r["round"] for r in rounds] == [0, 1, 1, 2]  # the resumed run starts where round 1 left it ...
    assert rounds[2]["accuracy"] == rounds[1]["accuracy"]  # ... from the saved head itself
    for d in (0, 1):  # and each device's second round goes on in its stream where the first stopped
        history = fleet.history(f"dev{d}")
        assert [r["round"] for r in history] == [1, 2]
        assert history[1]["consumed"] - history[0]["consumed"] == 8 * SAMPLES
    final = edgefdfa.load_checkpoint(fleet.tmp / "srv" / "global.npz").learner.get_params()
    assert not np.array_equal(final, saved)
