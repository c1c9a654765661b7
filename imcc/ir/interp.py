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


def run_streaming(graph: Graph, feeds: dict[str, np.ndarray],
                  visit: Callable[[Node, list[np.ndarray], np.ndarray], np.ndarray | None],
                  ) -> None:
    """Execute `graph` on `feeds` like `run`, but keep each activation only until its last
    use (calibrating on hundreds of images must not hold every intermediate tensor).
    ``visit(node, inputs, output)`` is called after each node; when it returns an array,
    that array replaces the node's output for the rest of the run (a pass fitting a layer
    on the fly lets downstream nodes see the fitted layer)."""
    remaining: dict[int, int] = {}
    for node in graph.nodes:
        for v in node.inputs:
            remaining[id(v)] = remaining.get(id(v), 0) + 1
    env: dict[int, np.ndarray] = {
        id(v): np.asarray(feeds[v.name], dtype=v.type.dtype.numpy) for v in graph.inputs}
    for node in graph.nodes:
        read = list(node.inputs)
        ins = [v.data if v.data is not None else env[id(v)] for v in read]
        y = node.op.compute(*ins)
        over = visit(node, ins, y)
        env[id(node.output)] = y if over is None else over
        del ins, y, over
        for v in read:
            remaining[id(v)] -= 1
            if remaining[id(v)] == 0:
                env.pop(id(v), None)
