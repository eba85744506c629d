"""Layer shapes, loaded from the CSV files next to this module.

kind `block`: depthwise 3x3 (pad 1, stride s) on C_in x H x W, then a 1x1 C_in -> C_out on
the depthwise output, so the ops dw, pw and sep apply. kind `expand`: a 1x1 C_in -> C_out on
H x W only (op pw). `count` is how often the layer occurs in its network.
"""
import csv
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_TABLE = HERE / "mobilenet_v1_v2.csv"
KERNEL = 3
PAD = 1


@dataclass(frozen=True)
class Layer:
    id: int
    net: str
    kind: str
    c_in: int
    hw: int
    stride: int
    c_out: int
    count: int

    @property
    def ops(self):
        return ("dw", "pw", "sep") if self.kind == "block" else ("pw",)

    @property
    def out_hw(self):
        """Spatial size after the depthwise stage (the pointwise input and output size)."""
        if self.kind != "block":
            return self.hw
        return (self.hw + 2 * PAD - KERNEL) // self.stride + 1

    @property
    def label(self):
        suffix = " (exp)" if self.kind == "expand" else ""
        return f"{self.c_in},{self.hw},{self.stride},{self.c_out}{suffix}"

    def macs(self, op, batch=1):
        pixels = batch * self.out_hw ** 2
        dw = self.c_in * KERNEL * KERNEL * pixels
        pw = self.c_in * self.c_out * pixels
        return {"dw": dw, "pw": pw, "sep": dw + pw}[op]

    def flop(self, op, batch=1):
        return 2 * self.macs(op, batch)


def load_layers(path=DEFAULT_TABLE):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    ints = ("id", "c_in", "hw", "stride", "c_out", "count")
    layers = [Layer(**{k: int(v) if k in ints else v for k, v in row.items()}) for row in rows]
    for layer in layers:
        if layer.kind not in ("block", "expand"):
            raise ValueError(f"{path}: layer {layer.id}: unknown kind {layer.kind!r}")
    return layers
