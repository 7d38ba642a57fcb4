"""The fleet's ClientApp: each train message is one round of the device its SuperNode's
--node-config describes (device.py). Start it with `edgefdfa fleet client` or flower-supernode."""

from __future__ import annotations

from flwr.app import Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from .device import Device, DeviceConfig

app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Adopt the global head, learn the next samples of this device's stream, send the head back."""
    config = msg.content["config"]
    device = Device(DeviceConfig.from_node_config(dict(context.node_config)))
    n = int(config["server-round"]) + int(config["rounds-before"])  # the fleet's round, across server restarts
    arrays, metrics = device.round(msg.content["arrays"], n, bool(config["feedback"]))
    return Message(RecordDict({"arrays": arrays, "metrics": MetricRecord(metrics)}), reply_to=msg)
