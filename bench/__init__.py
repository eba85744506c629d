"""CPU latency benchmark of dsconv_ext against ATen on MobileNet V1/V2 layer shapes.

Run from the repository root: `python -m bench --quick` (see `python -m bench --help`).
"""
