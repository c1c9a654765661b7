"""Reference interpreter: runs a graph with each op's numpy semantics (float, no mapping).
Used for calibration and as a test oracle alongside onnxruntime."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from imcc.ir.graph import Graph, Node, Value


def run(graph: Graph, feeds: dict[str, np.ndarray],
        observe: Callable[[Node, list[np.ndarray], np.ndarray], None] | None = None,
        ) -> dict[str, np.ndarray]:
    """Execute `graph` on `feeds` (input name -> array). `observe(node, inputs, output)` is
    called after each node (e.g. to collect activation statistics). Returns every value
    computed, by name."""
    env: dict[int, np.ndarray] = {}
    for v in graph.inputs:
        env[id(v)] = np.asarray(feeds[v.name], dtype=v.type.dtype.numpy)

    def get(v: Value) -> np.ndarray:
        return v.data if v.data is not None else env[id(v)]

    out: dict[str, np.ndarray] = {}
    for node in graph.nodes:
        ins = [get(v) for v in node.inputs]
        y = node.op.compute(*ins)
        env[id(node.output)] = y
        if observe is not None:
            observe(node, ins, y)
        out[node.output.name] = y
    for v in graph.inputs:
        out[v.name] = env[id(v)]
    return out


def run_outputs(graph: Graph, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    vals = run(graph, feeds)
    return [v.data if v.data is not None else vals[v.name] for v in graph.outputs]
