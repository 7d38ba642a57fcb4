"""A fleet of devices learning together over Flower (`pip install 'edgefdfa[fleet]'`).

Each device (a Flower SuperNode running client_app) learns online from its own stream with its
EdgeModel, sends its head each round and adopts the aggregate; the server (a SuperLink running
server_app) averages the heads, refuses broken ones (strategy.py), evaluates and saves the global
head after every round so that a restarted server resumes from it. `edgefdfa fleet server|client`
(command.py) starts Flower's own processes (processes.py) around the app in app/.
"""
