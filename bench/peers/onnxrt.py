"""ONNX Runtime peer: the lowered graph (bench/graph.py) written as an ONNX model with
onnx.helper, run by an InferenceSession on the CPU execution provider (NCHW in and out)."""
import numpy as np

OPSET = 17
ACT_NODES = {"relu": ("Relu", {}), "hardswish": ("HardSwish", {}),
             "hardsigmoid": ("HardSigmoid", {"alpha": 1.0 / 6.0, "beta": 0.5})}


def build_onnx(graph):
    """onnx.ModelProto computing `graph` (float32, fixed shapes)."""
    from onnx import TensorProto, checker, helper, numpy_helper

    nodes, inits = [], []

    def const(name, array):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def act(kind, src, dst):
        if kind == "relu6":
            lo = const(f"{dst}_lo", np.array(0.0, np.float32))
            hi = const(f"{dst}_hi", np.array(6.0, np.float32))
            nodes.append(helper.make_node("Clip", [src, lo, hi], [dst]))
        else:
            op_type, attrs = ACT_NODES[kind]
            nodes.append(helper.make_node(op_type, [src], [dst], **attrs))

    for op in graph.ops:
        out = f"{op.output}_pre" if op.act and op.kind != "act" else op.output
        if op.kind == "conv":
            ins = op.inputs + [const(f"{op.output}_w", op.weight)]
            if op.bias is not None:
                ins.append(const(f"{op.output}_b", op.bias))
            ph, pw = op.padding
            nodes.append(helper.make_node(
                "Conv", ins, [out], kernel_shape=list(op.weight.shape[2:]),
                strides=list(op.stride), pads=[ph, pw, ph, pw], dilations=list(op.dilation),
                group=op.groups))
        elif op.kind == "linear":
            ins = op.inputs + [const(f"{op.output}_w", op.weight)]
            if op.bias is not None:
                ins.append(const(f"{op.output}_b", op.bias))
            nodes.append(helper.make_node("Gemm", ins, [out], transB=1))
        elif op.kind in ("add", "mul"):
            nodes.append(helper.make_node(op.kind.capitalize(), op.inputs, [out]))
        elif op.kind == "mean":
            if len(op.shape) == 4:
                nodes.append(helper.make_node("GlobalAveragePool", op.inputs, [out]))
            else:
                pooled = f"{op.output}_pooled"
                nodes.append(helper.make_node("GlobalAveragePool", op.inputs, [pooled]))
                nodes.append(helper.make_node("Flatten", [pooled], [out], axis=1))
        elif op.kind == "flatten":
            nodes.append(helper.make_node("Flatten", op.inputs, [out], axis=1))
        elif op.kind != "act":
            raise NotImplementedError(f"ONNX builder: op kind {op.kind!r}")
        if op.act:
            act(op.act, op.inputs[0] if op.kind == "act" else out, op.output)

    def value(name, shape):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))

    g = helper.make_graph(nodes, "dsconv_bench", [value(graph.input, graph.input_shape)],
                          [value(graph.output, graph.output_shape)], initializer=inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="dsconv_ext bench")
    model.ir_version = 8
    checker.check_model(model)
    return model


class OnnxRuntime:
    """`runner = OnnxRuntime(graph, threads)`; `runner.run()` times one inference on the
    input set with `runner.set_input(x_nchw)`; `runner.output()` is the last result (NCHW)."""
    name = "ort"
    label = "ONNX Runtime"

    @staticmethod
    def available():
        try:
            import onnx  # noqa: F401
            import onnxruntime  # noqa: F401
        except ImportError as e:
            return f"ONNX Runtime peer skipped: {e} (pip install '.[bench]')"
        return None

    @staticmethod
    def version():
        import onnxruntime
        return f"onnxruntime {onnxruntime.__version__} (CPUExecutionProvider)"

    def __init__(self, graph, threads):
        import onnxruntime as ort
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # The bench interleaves runtimes in one process: pool threads that keep spinning
        # after a run would steal the cores from the next runtime's run.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(build_onnx(graph).SerializeToString(), opts,
                                            providers=["CPUExecutionProvider"])
        self.input, self.out_name = graph.input, graph.output
        self.feed = None
        self.result = None

    def what_ran(self):
        return f"providers {', '.join(self.session.get_providers())}"

    def set_input(self, x):
        self.feed = {self.input: np.ascontiguousarray(x, dtype=np.float32)}

    def run(self):
        self.result = self.session.run([self.out_name], self.feed)[0]
        return self.result

    def output(self):
        return self.result
