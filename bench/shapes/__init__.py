"""Layer shapes, loaded from the CSV files next to this module (lines starting with # are
comments). One id space across the files.

kind `block`: depthwise kxk (pad k//2, stride s, activation `act`) on C_in x H x W, then a
1x1 C_in -> C_out (activation `pw_act`) on the depthwise output, so the ops dw, pw and sep
apply. kind `expand`: a 1x1 C_in -> C_out (activation `act`) on H x W only (op pw).
`count` is how often the layer occurs in its network.
"""
import csv
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_TABLES = tuple(sorted(HERE.glob("*.csv")))
ACTS = ("none", "relu", "relu6", "hardswish")


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
    kernel: int = 3
    act: str = "none"
    pw_act: str = "none"

    @property
    def ops(self):
        return ("dw", "pw", "sep") if self.kind == "block" else ("pw",)

    @property
    def pad(self):
        return self.kernel // 2 if self.kind == "block" else 0

    @property
    def out_hw(self):
        """Spatial size after the depthwise stage (the pointwise input and output size)."""
        if self.kind != "block":
            return self.hw
        return (self.hw + 2 * self.pad - self.kernel) // self.stride + 1

    def activation(self, stage):
        """dsconv_ext activation name (None for none) of stage 'dw' or 'pw' of this layer;
        an expand layer's 1x1 has the row's `act`."""
        name = self.pw_act if stage == "pw" and self.kind == "block" else self.act
        return None if name == "none" else name

    @property
    def label(self):
        if self.kind == "expand":
            return f"{self.c_in},{self.hw},1x1,{self.c_out} (exp)"
        return f"{self.c_in},{self.hw},{self.kernel}x{self.kernel}s{self.stride},{self.c_out}"

    def macs(self, op, batch=1):
        pixels = batch * self.out_hw ** 2
        dw = self.c_in * self.kernel * self.kernel * pixels
        pw = self.c_in * self.c_out * pixels
        return {"dw": dw, "pw": pw, "sep": dw + pw}[op]

    def flop(self, op, batch=1):
        return 2 * self.macs(op, batch)


def load_layers(paths=DEFAULT_TABLES):
    ints = ("id", "c_in", "hw", "stride", "c_out", "count", "kernel")
    layers = []
    for path in paths:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(line for line in f if not line.startswith("#")))
        for row in rows:
            layer = Layer(**{k: int(v) if k in ints else v for k, v in row.items() if v})
            if layer.kind not in ("block", "expand"):
                raise ValueError(f"{path}: layer {layer.id}: unknown kind {layer.kind!r}")
            if layer.act not in ACTS or layer.pw_act not in ACTS:
                raise ValueError(f"{path}: layer {layer.id}: activation not in {ACTS}")
            layers.append(layer)
    ids = [layer.id for layer in layers]
    if len(set(ids)) != len(ids):
        raise ValueError(f"duplicate layer ids in {[str(p) for p in paths]}")
    return sorted(layers, key=lambda layer: layer.id)
