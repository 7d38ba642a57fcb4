"""A fleet on localhost: `edgefdfa fleet server` (a SuperLink and the ServerApp) and SuperNodes
learning online from their own IMU streams (every device upside down, each seeing two of the four
activities; devices 0-2 see all four between them). Three rounds; device 3 is killed while its
round is under way, device 4 joins late."""

from __future__ import annotations

import os
import signal

import edgefdfa
from edgefdfa.fleet import processes

from conftest import SAMPLES, wait_until


def test_rounds_survive_a_killed_client_and_take_a_late_one(fleet):
    server = fleet.server("srv", "--rounds", "3", "--min-nodes", "2")
    clients = [fleet.client(0), fleet.client(1)]
    clients.append(fleet.client(2))
    victim = fleet.supernode(3)
    log = fleet.tmp / "dev3.log"
    # killed mid-round: its ClientApp process of round 2 has started, its reply has not been sent
    wait_until("round 2 reaching device 3", lambda: log.read_text().count("Start `flwr-clientapp`") >= 2,
               procs=(server,))
    os.killpg(victim.pid, signal.SIGKILL)
    late = fleet.client(4)
    wait_until("the server's run", lambda: server.poll() is not None, timeout=150)
    assert server.returncode == 0, (fleet.tmp / "srv.err").read_text()[-2000:]

    rounds = fleet.history("srv")
    assert [r["round"] for r in rounds] == [0, 1, 2, 3]
    assert rounds[3]["accuracy"] > rounds[0]["accuracy"] + 0.03, rounds  # the fleet learned
    # the killed device sent nothing in round 2, and the round went on with the others
    assert len(fleet.history("dev3")) == 1
    assert len(rounds[2]["nodes"]) >= 3
    # the late device took part in round 3 from the global head, its stream from the start
    late_rounds = fleet.history("dev4")
    assert [r["round"] for r in late_rounds] == [3] and late_rounds[0]["consumed"] == 32 + 8 * (SAMPLES - 1)
    # the devices kept their place in their streams: each round went on where the last stopped
    for d in (0, 1, 2):
        consumed = [r["consumed"] for r in fleet.history(f"dev{d}")]
        assert consumed == [32 + 8 * (SAMPLES - 1) + 8 * SAMPLES * k for k in range(3)]
    # the global head is a checkpoint edgefdfa reads, and the model file it was exported as
    model = edgefdfa.load_checkpoint(fleet.tmp / "srv" / "global.npz")
    exported = edgefdfa.load(fleet.tmp / "srv" / "imu-activity-fleet.onnx")
    assert (model.learner.get_params() == exported.learner.get_params()).all()
    for c in clients + [late]:
        processes.stop(c)
        assert c.returncode == 0
