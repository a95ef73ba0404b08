"""The libraries softjit is compared with, each single-threaded and each optional.

A peer that cannot be imported is reported as "not installed" (pip install 'softjit[bench]'
brings them); one that fails on a row is reported with its error. Every peer computes softmax
over the last axis of a (rows, n) float32 array and is timed through its ordinary Python API:

    numpy         e = np.exp(x - x.max(-1, keepdims=True)); e / e.sum(-1, keepdims=True)
    scipy         scipy.special.softmax(x, axis=-1)
    torch         torch.softmax(t, -1), new output; torch-out: the same into a preallocated tensor
    onnxruntime   a one-node Softmax model (built in memory with onnx.helper), I/O bound to
                  preallocated arrays, intra- and inter-op threads 1
    litert        a one-op SOFTMAX TFLite model (written with the tflite schema package) run by
                  ai-edge-litert's interpreter with its default XNNPACK delegate, one thread; x is
                  written into the interpreter's input tensor once, invoke() is what is timed
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass

import numpy as np

from softjit.bench.timing import Timed, now_ns

NOT_INSTALLED = "not installed"


class LoopTimed(Timed):
    """Times `number` calls of a Python callable; output() converts its last result."""

    def __init__(self, call, convert=np.asarray, output=None):
        self.call, self.convert, self.fixed_output, self.last = call, convert, output, None

    def run(self, number: int) -> int:
        call = self.call
        start = now_ns()
        for _ in range(number):
            last = call()
        elapsed = now_ns() - start
        self.last = last
        return elapsed

    def output(self):
        if self.fixed_output is not None:
            return self.fixed_output()
        return None if self.last is None else self.convert(self.last)


class StatementTimed(Timed):
    """Times `number` runs of one Python expression compiled into a loop whose locals are the
    names it uses (as timeit does): no lambda is called per run, so a call costs what it costs
    written in a user's loop. output() converts the last result."""

    def __init__(self, expression: str, names: dict, convert=np.asarray):
        parameters = ", ".join(names)
        source = (f"def loop(number, now_ns, {parameters}):\n"
                  f"    start = now_ns()\n"
                  f"    for _ in range(number):\n"
                  f"        last = {expression}\n"
                  f"    return now_ns() - start, last\n")
        namespace: dict = {}
        exec(compile(source, f"<timed {expression}>", "exec"), namespace)  # noqa: S102
        self.loop, self.names, self.convert, self.last = namespace["loop"], names, convert, None

    def run(self, number: int) -> int:
        elapsed, self.last = self.loop(number, now_ns, **self.names)
        return elapsed

    def output(self):
        return None if self.last is None else self.convert(self.last)


@dataclass(frozen=True)
class Peer:
    key: str
    label: str
    modules: tuple  # what must import
    make: object  # make(x2d) -> Timed

    def status(self) -> str | None:
        """None when usable, else why not."""
        for name in self.modules:
            try:
                importlib.import_module(name)
            except Exception:  # ImportError, or a broken install that fails while importing
                return NOT_INSTALLED
        return None

    def version(self) -> str:
        versions = []
        for name in dict.fromkeys(m.split(".")[0] for m in self.modules):
            try:
                module = importlib.import_module(name)
            except Exception:
                continue
            versions.append(f"{name} {_version_of(name, module)}")
        return ", ".join(versions)


def _version_of(name: str, module) -> str:
    version = getattr(module, "__version__", None)
    if version:
        return str(version)
    import importlib.metadata

    for distribution in (name, name.replace("_", "-")):
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "?"


def _numpy(x):
    def call():
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    return LoopTimed(call)


def _scipy(x):
    from scipy.special import softmax
    return LoopTimed(lambda: softmax(x, axis=-1))


def _torch_module():
    import torch
    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass  # already fixed once inter-op work has started; softmax runs intra-op anyway
    return torch


def _torch(x):
    torch = _torch_module()
    t = torch.from_numpy(x)
    return LoopTimed(lambda: torch.softmax(t, -1), convert=lambda r: r.numpy())


def _torch_out(x):
    torch = _torch_module()
    t = torch.from_numpy(x)
    y = torch.empty_like(t)
    return LoopTimed(lambda: torch.softmax(t, -1, out=y), convert=lambda r: r.numpy())


_ort_sessions: dict = {}


def onnx_softmax_model() -> bytes:
    """A one-node ONNX model: y = Softmax(x, axis=-1), x and y float32 [rows, n] (symbolic)."""
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("Softmax", ["x"], ["y"], axis=-1)
    graph = helper.make_graph(
        [node], "softmax",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["rows", "n"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["rows", "n"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="softjit-bench")
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _ort_session():
    import onnxruntime as ort

    session = _ort_sessions.get("softmax")
    if session is None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        session = ort.InferenceSession(onnx_softmax_model(), options,
                                       providers=["CPUExecutionProvider"])
        _ort_sessions["softmax"] = session
    return session


def _onnxruntime(x):
    session = _ort_session()
    y = np.empty_like(x)
    binding = session.io_binding()
    binding.bind_cpu_input("x", x)
    binding.bind_output("y", "cpu", 0, np.float32, list(x.shape), y.ctypes.data)
    run = session.run_with_iobinding
    return LoopTimed(lambda: run(binding), output=lambda: y)


def tflite_softmax_model(rows: int, n: int) -> bytes:
    """A TFLite flatbuffer with one SOFTMAX (beta 1) from tensor 0 [rows, n] to tensor 1."""
    import flatbuffers
    import tflite

    b = flatbuffers.Builder(1024)

    def int_vector(start, values):
        start(b, len(values))
        for v in reversed(values):
            b.PrependInt32(v)
        return b.EndVector()

    def table_vector(start, offsets):
        start(b, len(offsets))
        for offset in reversed(offsets):
            b.PrependUOffsetTRelative(offset)
        return b.EndVector()

    tflite.SoftmaxOptionsStart(b)
    tflite.SoftmaxOptionsAddBeta(b, 1.0)
    options = tflite.SoftmaxOptionsEnd(b)
    op_inputs = int_vector(tflite.OperatorStartInputsVector, [0])
    op_outputs = int_vector(tflite.OperatorStartOutputsVector, [1])
    tflite.OperatorStart(b)
    tflite.OperatorAddOpcodeIndex(b, 0)
    tflite.OperatorAddInputs(b, op_inputs)
    tflite.OperatorAddOutputs(b, op_outputs)
    tflite.OperatorAddBuiltinOptionsType(b, tflite.BuiltinOptions.SoftmaxOptions)
    tflite.OperatorAddBuiltinOptions(b, options)
    operator = tflite.OperatorEnd(b)

    tensors = []
    for name in ("x", "y"):
        name_offset = b.CreateString(name)
        shape = int_vector(tflite.TensorStartShapeVector, [rows, n])
        tflite.TensorStart(b)
        tflite.TensorAddShape(b, shape)
        tflite.TensorAddType(b, tflite.TensorType.FLOAT32)
        tflite.TensorAddBuffer(b, 0)  # buffer 0: the empty sentinel, i.e. no constant data
        tflite.TensorAddName(b, name_offset)
        tensors.append(tflite.TensorEnd(b))
    tensor_vector = table_vector(tflite.SubGraphStartTensorsVector, tensors)
    graph_inputs = int_vector(tflite.SubGraphStartInputsVector, [0])
    graph_outputs = int_vector(tflite.SubGraphStartOutputsVector, [1])
    operators = table_vector(tflite.SubGraphStartOperatorsVector, [operator])
    graph_name = b.CreateString("main")
    tflite.SubGraphStart(b)
    tflite.SubGraphAddTensors(b, tensor_vector)
    tflite.SubGraphAddInputs(b, graph_inputs)
    tflite.SubGraphAddOutputs(b, graph_outputs)
    tflite.SubGraphAddOperators(b, operators)
    tflite.SubGraphAddName(b, graph_name)
    subgraph = tflite.SubGraphEnd(b)

    tflite.OperatorCodeStart(b)
    tflite.OperatorCodeAddBuiltinCode(b, tflite.BuiltinOperator.SOFTMAX)
    tflite.OperatorCodeAddDeprecatedBuiltinCode(b, tflite.BuiltinOperator.SOFTMAX)
    tflite.OperatorCodeAddVersion(b, 1)
    opcode = tflite.OperatorCodeEnd(b)
    tflite.BufferStart(b)
    empty_buffer = tflite.BufferEnd(b)

    opcodes = table_vector(tflite.ModelStartOperatorCodesVector, [opcode])
    subgraphs = table_vector(tflite.ModelStartSubgraphsVector, [subgraph])
    buffers = table_vector(tflite.ModelStartBuffersVector, [empty_buffer])
    description = b.CreateString("softjit bench: one SOFTMAX")
    tflite.ModelStart(b)
    tflite.ModelAddVersion(b, 3)
    tflite.ModelAddOperatorCodes(b, opcodes)
    tflite.ModelAddSubgraphs(b, subgraphs)
    tflite.ModelAddBuffers(b, buffers)
    tflite.ModelAddDescription(b, description)
    model = tflite.ModelEnd(b)
    b.Finish(model, file_identifier=b"TFL3")
    return bytes(b.Output())


def _litert(x):
    from ai_edge_litert.interpreter import Interpreter

    rows, n = x.shape
    interpreter = Interpreter(model_content=tflite_softmax_model(rows, n), num_threads=1)
    interpreter.allocate_tensors()
    ops = [d.get("op_name") for d in interpreter._get_ops_details()]
    if "DELEGATE" not in ops:
        raise RuntimeError(f"the XNNPACK delegate did not take the SOFTMAX (ops: {ops})")
    source = interpreter.get_input_details()[0]["index"]
    result = interpreter.get_output_details()[0]["index"]
    interpreter.tensor(source)()[...] = x
    invoke = interpreter.invoke
    return LoopTimed(invoke, output=lambda: interpreter.get_tensor(result))


PEERS = (
    Peer("numpy", "numpy (exp(x - max) / sum)", ("numpy",), _numpy),
    Peer("scipy", "scipy.special.softmax", ("scipy.special",), _scipy),
    Peer("torch", "torch.softmax", ("torch",), _torch),
    Peer("torch-out", "torch.softmax(out=)", ("torch",), _torch_out),
    Peer("onnxruntime", "onnxruntime Softmax", ("onnx", "onnxruntime"), _onnxruntime),
    Peer("litert", "LiteRT XNNPACK SOFTMAX", ("ai_edge_litert.interpreter", "tflite", "flatbuffers"),
         _litert),
)

BY_KEY = {p.key: p for p in PEERS}
