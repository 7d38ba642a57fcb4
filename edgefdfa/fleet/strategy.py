"""Flower's own strategies behind one guard: a reply whose head is non-finite, of another shape or
without a positive weight is refused before aggregation, named (node id and why) in the log and in
the round's record, and the round goes on with the others."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from flwr.app import ArrayRecord, Message, MetricRecord
from flwr.serverapp.strategy import FedAvg, FedTrimmedAvg

from .record import refusal

log = logging.getLogger("flwr")


class Guarded:
    """Mix-in before a Flower strategy: `expected` is {array name: shape} of the global record."""

    def __init__(self, *args, expected: dict[str, tuple[int, ...]], **kwargs):
        super().__init__(*args, **kwargs)
        self.expected = expected
        self.last: dict = {}  # the latest round: nodes that replied, refused (node, reason), failures

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        kept, refused, failed, nodes = [], [], [], []
        for msg in replies:
            node = msg.metadata.src_node_id
            if msg.has_error():  # no reply in time, or the ClientApp raised
                log.warning("round %d: node %d failed: %s", server_round, node, msg.error.reason)
                failed.append({"node": node, "reason": msg.error.reason})
                continue
            reason = refusal(msg.content, self.expected)
            if reason is None:
                kept.append(msg)
                nodes.append(node)
                continue
            log.warning("round %d: node %d refused: %s", server_round, node, reason)
            refused.append({"node": node, "reason": reason})
        self.last = {"nodes": nodes, "refused": refused, "failed": failed}
        if not kept:
            log.warning("round %d: no head to aggregate; the global head stays as it was", server_round)
            return None, None
        return super().aggregate_train(server_round, kept)


class GuardedFedAvg(Guarded, FedAvg):
    """FedAvg weighted by the samples each device learned this round."""


class GuardedTrimmedMean(Guarded, FedTrimmedAvg):
    """Flower's trimmed mean (beta of the heads cut at each end, per value): for a fleet where a
    device has gone bad but still sends finite heads."""


STRATEGIES = {"fedavg": GuardedFedAvg, "trimmed-mean": GuardedTrimmedMean}
