"""Other runtimes timed on the same layers and networks: each takes a bench.graph.Graph and a
thread count; `available()` returns None, or a one-line note saying why it is skipped."""
from .litert import LiteRT
from .onnxrt import OnnxRuntime

PEERS = (OnnxRuntime, LiteRT)
PEER_NAMES = {p.name: p for p in PEERS}
