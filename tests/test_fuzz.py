"""Fuzz the front end and compiler with mutated models.

Hypothesis flips, inserts and deletes bytes of a small valid model (conv -> relu ->
flatten -> gemm) and truncates it; a second test mutates fields of that model and of a
richer one (odd attribute values, dropped attributes, other input sizes, rewired inputs).
For every mutant, import + compile either raises an `ImccError` subclass, or succeeds with
a program whose simulation matches onnxruntime on the same mutant (when onnxruntime
accepts it). Anything else is a bug."""

from __future__ import annotations

import math
import multiprocessing
from concurrent.futures import ProcessPoolExecutor, TimeoutError
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from imcc.compiler import CompileOptions, compile_model
from imcc.errors import ImccError
from imcc.sim.simulator import simulate

# Skip the onnxruntime comparison (not the compile) for mutants whose simulation would be
# slow: the crossbar simulator gathers every window of every tile.
MAX_SIM_CYCLES = 20_000
MAX_INPUT_ELEMENTS = 100_000
OVERFLOW = 1e30


def _model_bytes() -> bytes:
    rng = np.random.default_rng(1)

    def init(name: str, *shape: int) -> onnx.TensorProto:
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)

    g = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], strides=[2, 2],
                          name="conv"),
         helper.make_node("Relu", ["c"], ["r"], name="relu"),
         helper.make_node("Flatten", ["r"], ["f"], name="flatten"),
         helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], transB=1, alpha=0.5, name="fc")],
        "fuzz", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])],
        initializer=[init("w", 3, 2, 3, 3), init("b", 3), init("fw", 5, 27), init("fb", 5)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m.SerializeToString()


def _rich_model_bytes() -> bytes:
    """More digital ops around the crossbar layers: BN, pooling, depthwise conv, residual
    add, concat, pad, slice, reshape, softmax."""
    rng = np.random.default_rng(2)

    def init(name: str, *shape: int) -> onnx.TensorProto:
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)

    def ints(name: str, *v: int) -> onnx.TensorProto:
        return numpy_helper.from_array(np.array(v, np.int64), name)

    var = numpy_helper.from_array(rng.uniform(0.5, 2.0, 3).astype(np.float32), "v")
    g = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], name="conv"),
         helper.make_node("BatchNormalization", ["c", "s", "bb", "m", "v"], ["bn"], name="bn"),
         helper.make_node("Relu", ["bn"], ["r"], name="relu"),
         helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2],
                          name="pool"),
         helper.make_node("Conv", ["p", "w2"], ["c2"], group=3, pads=[1, 1, 1, 1], name="dw"),
         helper.make_node("Add", ["p", "c2"], ["a"], name="add"),
         helper.make_node("Concat", ["a", "p"], ["cat"], axis=1, name="cat"),
         helper.make_node("Pad", ["cat", "pads"], ["pd"], mode="reflect", name="pad"),
         helper.make_node("Slice", ["pd", "st", "en", "ax"], ["sl"], name="slice"),
         helper.make_node("GlobalAveragePool", ["sl"], ["g"], name="gap"),
         helper.make_node("Reshape", ["g", "shape"], ["f"], name="reshape"),
         helper.make_node("Gemm", ["f", "fw", "fb"], ["l"], transB=1, name="fc"),
         helper.make_node("Softmax", ["l"], ["y"], axis=1, name="softmax")],
        "fuzz_rich", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        initializer=[init("w", 3, 2, 3, 3), init("b", 3), init("s", 3), init("bb", 3),
                     init("m", 3), var, init("w2", 3, 1, 3, 3),
                     ints("pads", 0, 0, 1, 1, 0, 0, 1, 1), ints("st", 1, 1), ints("en", 4, 5),
                     ints("ax", 2, 3), ints("shape", 0, -1), init("fw", 4, 6), init("fb", 4)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m.SerializeToString()


SEED = _model_bytes()
RICH = _rich_model_bytes()
_ODD_INTS = [0, 1, 2, 3, 5, -1, -2, 100, 10**6, 2**31, -(2**40)]
_ODD_FLOATS = [0.0, -1.0, 2.5, 1e30, float("nan"), float("inf")]

# One mutation: (kind, position in [0, 1) of the current length, payload).
_mutation = st.one_of(
    st.tuples(st.just("flip"), st.floats(0, 1, exclude_max=True), st.integers(0, 7)),
    st.tuples(st.just("set"), st.floats(0, 1, exclude_max=True), st.integers(0, 255)),
    st.tuples(st.just("insert"), st.floats(0, 1, exclude_max=True),
              st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("delete"), st.floats(0, 1, exclude_max=True), st.integers(1, 16)),
    st.tuples(st.just("truncate"), st.floats(0, 1, exclude_max=True), st.just(0)),
)


def mutate(data: bytes, muts: list[tuple[str, float, int | bytes]]) -> bytes:
    b = bytearray(data)
    for kind, pos, arg in muts:
        i = min(int(pos * len(b)), max(len(b) - 1, 0))
        if isinstance(arg, bytes):
            b[i:i] = arg  # insert
        elif kind == "flip" and b:
            b[i] ^= 1 << arg
        elif kind == "set" and b:
            b[i] = arg
        elif kind == "delete":
            del b[i:i + arg]
        elif kind == "truncate":
            del b[i:]
    return bytes(b)


def mutate_fields(data: bytes, muts: list[tuple[str, int, int, int]]) -> bytes:
    """Structured mutations of a valid model: odd attribute values, dropped attributes,
    other input sizes, inputs rewired to other values."""
    m = onnx.load_from_string(data)
    nodes = m.graph.node
    for kind, i, j, k in muts:
        node = nodes[i % len(nodes)]
        if kind == "attr" and node.attribute:
            a = node.attribute[j % len(node.attribute)]
            if a.type == onnx.AttributeProto.INTS and a.ints:
                a.ints[k % len(a.ints)] = _ODD_INTS[k % len(_ODD_INTS)]
            elif a.type == onnx.AttributeProto.INT:
                a.i = _ODD_INTS[k % len(_ODD_INTS)]
            elif a.type == onnx.AttributeProto.FLOAT:
                a.f = _ODD_FLOATS[k % len(_ODD_FLOATS)]
        elif kind == "drop_attr" and node.attribute:
            del node.attribute[j % len(node.attribute)]
        elif kind == "dim":
            dims = m.graph.input[0].type.tensor_type.shape.dim
            dims[1 + j % (len(dims) - 1)].dim_value = k % 12
        elif kind == "rewire" and node.input:
            pool = ["x", ""] + [o for n in nodes for o in n.output] + \
                [t.name for t in m.graph.initializer]
            node.input[j % len(node.input)] = pool[k % len(pool)]
    return m.SerializeToString()


def _ort_run(data: bytes, feeds: dict[str, np.ndarray]) -> list[np.ndarray] | None:
    """onnxruntime's outputs for the mutant, or None when it refuses the model."""
    import onnxruntime as ort

    try:
        opts = ort.SessionOptions()
        opts.log_severity_level = 4  # mutants make it warn; the outcome is what matters
        sess = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
        if {i.name for i in sess.get_inputs()} != set(feeds):
            return None
        return [np.asarray(o) for o in sess.run(None, feeds)]
    except Exception:  # noqa: BLE001 - any refusal by onnxruntime means "not comparable"
        return None


_POOL: list[ProcessPoolExecutor] = []


def _ort_outputs(data: bytes, feeds: dict[str, np.ndarray]) -> list[np.ndarray] | None:
    """`_ort_run` in a worker process: some malformed models abort onnxruntime itself
    (a failed C++ assertion), which must not take the test process down with it."""
    if not _POOL:
        _POOL.append(ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")))
    try:
        return _POOL[0].submit(_ort_run, data, feeds).result(timeout=60)
    except (BrokenProcessPool, TimeoutError):
        _POOL.pop().shutdown(wait=False, cancel_futures=True)
        return None


def check_mutant(data: bytes, path: Path) -> str:
    """Compile the mutant; returns the outcome ("refused", "compiled", "matched")."""
    path.write_bytes(data)
    try:
        res = compile_model(str(path), CompileOptions(quantize=False))
    except ImccError as exc:
        # VerifyError (exit code 70) is an ImccError too, but it means a compiler bug.
        assert exc.exit_code in (2, 3, 4, 5), f"{type(exc).__name__}: {exc}"
        return "refused"
    prog = res.program
    if prog.total_cycles > MAX_SIM_CYCLES:
        return "compiled"
    rng = np.random.default_rng(0)
    feeds = {}
    for name, shape in prog.inputs:
        dims = [2 if d is None else int(d) for d in shape]
        if math.prod(dims) > MAX_INPUT_ELEMENTS:
            return "compiled"
        feeds[name] = rng.standard_normal(dims).astype(np.float32)
    want = _ort_outputs(data, feeds)
    if want is None:
        return "compiled"
    if not all(np.all(np.isfinite(w)) and np.abs(w).max(initial=0) < OVERFLOW for w in want):
        # Mutated weights near the float32 limit: whether a sum overflows depends on the
        # accumulation order and precision (float32 in onnxruntime, float64 in the
        # simulator), so the outputs are not comparable.
        return "compiled"
    sim = simulate(prog, feeds)
    got = [sim.outputs[o] for o in prog.outputs]
    assert len(got) == len(want), (len(got), len(want))
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape, (g.shape, w.shape)
        # Float rounding only, relative to the output's magnitude (mutated weights can be
        # large).
        scale = float(np.abs(w).max(initial=1.0))
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5 * scale)
    return "matched"


@pytest.mark.parametrize("seed", [SEED, RICH], ids=["small", "rich"])
def test_seed_models_compile_and_match(tmp_path: Path, seed: bytes) -> None:
    assert check_mutant(seed, tmp_path / "seed.onnx") == "matched"


@pytest.mark.parametrize("cut", [0, 1, 10, len(SEED) // 2, len(SEED) - 1])
def test_truncations(tmp_path: Path, cut: int) -> None:
    assert check_mutant(SEED[:cut], tmp_path / "m.onnx") in ("refused", "compiled", "matched")


@settings(max_examples=200, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(muts=st.lists(_mutation, min_size=1, max_size=4))
def test_mutated_model_is_refused_or_correct(tmp_path: Path,
                                             muts: list[tuple[str, float, int | bytes]]) -> None:
    check_mutant(mutate(SEED, muts), tmp_path / "m.onnx")


@settings(max_examples=200, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(rich=st.booleans(),
       muts=st.lists(st.tuples(st.sampled_from(["attr", "drop_attr", "dim", "rewire"]),
                               st.integers(0, 50), st.integers(0, 50), st.integers(0, 50)),
                     min_size=1, max_size=3))
def test_mutated_fields_are_refused_or_correct(tmp_path: Path, rich: bool,
                                               muts: list[tuple[str, int, int, int]]) -> None:
    check_mutant(mutate_fields(RICH if rich else SEED, muts), tmp_path / "m.onnx")
