"""Structural questions about a graph that several passes ask.

`first_last_crossbar` is the one definition of the "first" and "last" crossbar layers
(used by the lowrank policy and by quantize's ``first_last_bits``). It is a data-flow
definition, independent of how the nodes happen to be ordered:

* first: crossbar nodes that no other crossbar node feeds, directly or through digital ops;
* last: crossbar nodes that feed no other crossbar node, directly or through digital ops.

A network with parallel branches can have several of each (e.g. two convs reading the
image); a network with a single crossbar layer has it in both lists.
"""

from __future__ import annotations

from imcc.ir.graph import Graph, Node


def first_last_crossbar(graph: Graph) -> tuple[list[Node], list[Node]]:
    """(first, last) crossbar nodes, each list in graph order (see the module docstring)."""
    first: list[Node] = []
    downstream: set[int] = set()  # ids of values computed from some crossbar output
    for node in graph.nodes:
        dep = any(id(v) in downstream for v in node.inputs)
        if node.op.crossbar and not dep:
            first.append(node)
        if node.op.crossbar or dep:
            downstream.update(id(o) for o in node.outputs)
    last: list[Node] = []
    upstream: set[int] = set()  # ids of values some crossbar node reads, directly or not
    for node in reversed(graph.nodes):
        feeds = any(id(o) in upstream for o in node.outputs)
        if node.op.crossbar and not feeds:
            last.append(node)
        if node.op.crossbar or feeds:
            upstream.update(id(v) for v in node.inputs if not v.is_const)
    last.reverse()
    return first, last


__all__ = ["first_last_crossbar"]
