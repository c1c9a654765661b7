"""Compile time against graph size: a chain of N Relu nodes after one conv, compiled with
the default pipeline, timed against onnxruntime loading and running the same model once
(the peer measured in the same run). Compile time must grow linearly with N: the ratio
column stays flat and `per node` stays constant.

    python benchmarks/bench_graph_size.py [--sizes 5000,20000,50000]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).parent))
from common import environment, timed  # noqa: E402

from imcc.compiler import CompileOptions, compile_graph  # noqa: E402
from imcc.frontend import import_proto  # noqa: E402
from imcc.sim.evaluate import ort_session  # noqa: E402


def chain(n: int) -> bytes:
    w = numpy_helper.from_array(np.ones((4, 4, 1, 1), np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["v0"], name="conv")]
    nodes += [helper.make_node("Relu", [f"v{i}"], [f"v{i + 1}"], name=f"relu{i}")
              for i in range(n)]
    g = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1, 4, 4, 4])], [helper.make_tensor_value_info(
            f"v{n}", TensorProto.FLOAT, [1, 4, 4, 4])], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    return m.SerializeToString()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="5000,20000,50000")
    args = ap.parse_args()
    print(environment())
    print(f"{'nodes':>7} {'imcc compile s':>15} {'per node us':>12} {'ort load+run s':>15} "
          f"{'ratio':>7}")
    import onnx

    x = np.ones((1, 4, 4, 4), np.float32)
    for n in (int(v) for v in args.sizes.split(",")):
        data = chain(n)

        def compile_once(data: bytes = data, n: int = n) -> None:
            compile_graph(import_proto(onnx.load_from_string(data), "chain"),
                          CompileOptions(), f"chain{n}")

        def ort_once(data: bytes = data) -> None:
            ort_session(data).run(None, {"x": x})

        t_imcc = min(timed(compile_once, 1))
        t_ort = min(timed(ort_once, 1))
        print(f"{n:>7} {t_imcc:>15.2f} {t_imcc / n * 1e6:>12.1f} {t_ort:>15.2f} "
              f"{t_imcc / t_ort:>7.1f}")
    print(environment())


if __name__ == "__main__":
    main()
