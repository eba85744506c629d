"""LiteRT peer: the lowered graph (bench/graph.py) written as a .tflite flatbuffer with the
schema module that ships inside ai-edge-litert (no TensorFlow), run by the ai-edge-litert
Interpreter, whose default CPU path is the XNNPACK delegate. TFLite is NHWC: 4-D values are
transposed, conv weights are OHWI, depthwise weights [1, kh, kw, C*M].

Padding: TFLite has only SAME and VALID. SAME puts the odd pixel of padding at the bottom /
right, PyTorch pads symmetrically, so for stride 2 on even sizes the windows differ; a conv
whose PyTorch padding is not what SAME would do gets an explicit PAD op and VALID."""
import numpy as np


def _nhwc(shape):
    return (shape[0], shape[2], shape[3], shape[1]) if len(shape) == 4 else tuple(shape)


def same_matches(size, kernel, stride, dilation, pad):
    """Whether TFLite SAME on one spatial dim reads the same windows as PyTorch `pad`."""
    eff = (kernel - 1) * dilation + 1
    out_torch = (size + 2 * pad - eff) // stride + 1
    out_same = -(-size // stride)
    total = max((out_same - 1) * stride + eff - size, 0)
    return out_same == out_torch and total // 2 == pad


class _Builder:
    def __init__(self, schema):
        self.s = schema
        self.tensors, self.buffers, self.operators = [], [schema.BufferT()], []
        self.codes = {}
        self.index = {}

    def tensor(self, name, shape, data=None, dtype=np.float32):
        s = self.s
        t = s.TensorT()
        t.name, t.shape = name, list(shape)
        t.type = s.TensorType.FLOAT32 if dtype == np.float32 else s.TensorType.INT32
        if data is not None:
            buf = s.BufferT()
            buf.data = np.frombuffer(np.ascontiguousarray(data, dtype).tobytes(), np.uint8)
            self.buffers.append(buf)
            t.buffer = len(self.buffers) - 1
        self.tensors.append(t)
        self.index[name] = len(self.tensors) - 1
        return self.index[name]

    def const(self, name, data, dtype=np.float32):
        return self.tensor(name, np.shape(data), data, dtype)

    def op(self, code, inputs, outputs, options_type=0, options=None):
        s = self.s
        if code not in self.codes:
            oc = s.OperatorCodeT()
            oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = code, min(code, 127), 1
            self.codes[code] = (len(self.codes), oc)
        o = s.OperatorT()
        o.opcodeIndex = self.codes[code][0]
        o.inputs, o.outputs = list(inputs), list(outputs)
        o.builtinOptionsType, o.builtinOptions = options_type, options
        self.operators.append(o)

    def options(self, cls, **fields):
        opt = getattr(self.s, cls)()
        for k, v in fields.items():
            setattr(opt, k, v)
        return opt


def build_tflite(graph):
    """The .tflite model (bytes) computing `graph` on NHWC input [N, H, W, C]."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as s

    B, Op, Opt, Act = s.BuiltinOperator, s.BuiltinOptions, s.Padding, s.ActivationFunctionType
    fused = {None: Act.NONE, "relu": Act.RELU, "relu6": Act.RELU6}
    b = _Builder(s)
    b.tensor(graph.input, _nhwc(graph.input_shape))

    def value(name):
        return b.index[name]

    def new(name, shape):
        return b.tensor(name, _nhwc(shape))

    for op in graph.ops:
        name = op.output
        # graph.lower fuses only ReLU / ReLU6 into conv, linear and add: both are TFLite
        # fused activations; other activations are ops of their own (kind "act")
        act = fused[op.act] if op.kind != "act" else Act.NONE
        out = new(name, op.shape)
        x = value(op.inputs[0])
        if op.kind == "conv":
            o, ipg, kh, kw = op.weight.shape
            c_in = graph.shapes[op.inputs[0]][1]
            (sh, sw), (ph, pw), (dh, dw) = op.stride, op.padding, op.dilation
            h, w = graph.shapes[op.inputs[0]][2:]
            if same_matches(h, kh, sh, dh, ph) and same_matches(w, kw, sw, dw, pw):
                padding = Opt.SAME
            else:
                n = graph.shapes[op.inputs[0]]
                padded = (n[0], n[1], h + 2 * ph, w + 2 * pw)
                pads = b.const(f"{name}_pads", [[0, 0], [ph, ph], [pw, pw], [0, 0]], np.int32)
                xp = new(f"{name}_padded", padded)
                b.op(B.PAD, [x, pads], [xp], Op.PadOptions, b.options("PadOptionsT"))
                x, padding = xp, Opt.VALID
            # TFLite's conv kernels need a bias tensor
            bias = b.const(f"{name}_b", np.zeros(o, np.float32) if op.bias is None else op.bias)
            if op.groups == 1:
                wt = b.const(f"{name}_w", op.weight.transpose(0, 2, 3, 1))
                b.op(B.CONV_2D, [x, wt, bias], [out], Op.Conv2DOptions, b.options(
                    "Conv2DOptionsT", padding=padding, strideH=sh, strideW=sw,
                    dilationHFactor=dh, dilationWFactor=dw, fusedActivationFunction=act))
            elif op.groups == c_in and ipg == 1:
                wt = b.const(f"{name}_w", op.weight.transpose(1, 2, 3, 0))
                b.op(B.DEPTHWISE_CONV_2D, [x, wt, bias], [out], Op.DepthwiseConv2DOptions,
                     b.options("DepthwiseConv2DOptionsT", padding=padding, strideH=sh,
                               strideW=sw, depthMultiplier=o // c_in, dilationHFactor=dh,
                               dilationWFactor=dw, fusedActivationFunction=act))
            else:
                raise NotImplementedError(f"TFLite builder: grouped conv {name} "
                                          f"(groups={op.groups}) is not supported")
        elif op.kind == "linear":
            wt = b.const(f"{name}_w", op.weight)
            bias = -1 if op.bias is None else b.const(f"{name}_b", op.bias)
            b.op(B.FULLY_CONNECTED, [x, wt, bias], [out], Op.FullyConnectedOptions,
                 b.options("FullyConnectedOptionsT", fusedActivationFunction=act))
        elif op.kind in ("add", "mul"):
            code, opts, cls = ((B.ADD, Op.AddOptions, "AddOptionsT") if op.kind == "add"
                               else (B.MUL, Op.MulOptions, "MulOptionsT"))
            b.op(code, [x, value(op.inputs[1])], [out], opts,
                 b.options(cls, fusedActivationFunction=act))
        elif op.kind == "mean":
            axes = b.const(f"{name}_axes", [1, 2], np.int32)
            b.op(B.MEAN, [x, axes], [out], Op.ReducerOptions,
                 b.options("ReducerOptionsT", keepDims=len(op.shape) == 4))
        elif op.kind == "flatten":
            shape = b.const(f"{name}_shape", list(op.shape), np.int32)
            b.op(B.RESHAPE, [x, shape], [out], Op.ReshapeOptions,
                 b.options("ReshapeOptionsT", newShape=list(op.shape)))
        elif op.kind == "act":
            _activation(b, op.act, x, out, name, op.shape)
        else:
            raise NotImplementedError(f"TFLite builder: op kind {op.kind!r}")

    sub = s.SubGraphT()
    sub.tensors, sub.operators = b.tensors, b.operators
    sub.inputs, sub.outputs = [value(graph.input)], [value(graph.output)]
    sub.name = "main"
    model = s.ModelT()
    model.version, model.description = 3, "dsconv_ext bench"
    model.operatorCodes = [oc for _, oc in sorted(b.codes.values(), key=lambda t: t[0])]
    model.subgraphs, model.buffers = [sub], b.buffers
    fb = flatbuffers.Builder(1024)
    fb.Finish(model.Pack(fb), file_identifier=b"TFL3")
    return bytes(fb.Output())


def _activation(b, kind, x, out, name, shape):
    s = b.s
    B, Op, Act = s.BuiltinOperator, s.BuiltinOptions, s.ActivationFunctionType
    if kind in ("relu", "relu6"):
        b.op(B.RELU if kind == "relu" else B.RELU6, [x], [out])
    elif kind == "hardswish":
        b.op(B.HARD_SWISH, [x], [out], Op.HardSwishOptions, b.options("HardSwishOptionsT"))
    elif kind == "hardsigmoid":  # relu6(x + 3) / 6
        three = b.const(f"{name}_three", np.array([3.0], np.float32))
        sixth = b.const(f"{name}_sixth", np.array([1.0 / 6.0], np.float32))
        mid = b.tensor(f"{name}_plus3", _nhwc(shape))
        b.op(B.ADD, [x, three], [mid], Op.AddOptions,
             b.options("AddOptionsT", fusedActivationFunction=Act.RELU6))
        b.op(B.MUL, [mid, sixth], [out], Op.MulOptions, b.options("MulOptionsT"))
    else:
        raise NotImplementedError(f"TFLite builder: activation {kind!r}")


class LiteRT:
    """`runner = LiteRT(graph, threads)`; `set_input(x_nchw)` copies the input in once;
    `run()` is one Interpreter.invoke(); `output()` is the result (NCHW for 4-D)."""
    name = "litert"
    label = "LiteRT"

    @staticmethod
    def available():
        try:
            import flatbuffers  # noqa: F401
            from ai_edge_litert import interpreter, schema_py_generated  # noqa: F401
        except ImportError as e:
            return f"LiteRT peer skipped: {e} (pip install '.[bench]')"
        return None

    @staticmethod
    def version():
        from importlib.metadata import version
        return f"ai-edge-litert {version('ai-edge-litert')} (Interpreter, default XNNPACK delegate)"

    def __init__(self, graph, threads):
        from ai_edge_litert.interpreter import Interpreter
        self.interpreter = Interpreter(model_content=build_tflite(graph), num_threads=threads)
        self.interpreter.allocate_tensors()
        self.in_index = self.interpreter.get_input_details()[0]["index"]
        self.out_index = self.interpreter.get_output_details()[0]["index"]

    def what_ran(self):
        """How many XNNPACK delegate partitions the graph became (1: XNNPACK runs all of it,
        when every op is one it supports)."""
        try:
            ops = self.interpreter._get_ops_details()  # not public API: may change
        except Exception:
            return "delegation unknown"
        parts = sum(op["op_name"] == "DELEGATE" for op in ops)
        return f"{parts} XNNPACK partition(s) over {len(ops) - parts} ops"

    def set_input(self, x):
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == 4:
            x = x.transpose(0, 2, 3, 1)
        self.interpreter.set_tensor(self.in_index, np.ascontiguousarray(x))

    def run(self):
        self.interpreter.invoke()

    def output(self):
        y = self.interpreter.get_tensor(self.out_index)
        return y.transpose(0, 3, 1, 2) if y.ndim == 4 else y
