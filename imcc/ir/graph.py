"""The graph: values know their producer and users; nodes are kept in topological order."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from imcc.errors import ImccError
from imcc.ir.annotations import LowRank, MappingChoice, WeightQuant
from imcc.ir.ops import Op
from imcc.ir.types import DType, TensorType


class VerifyError(ImccError):
    """An IR invariant is broken: a compiler bug, not a user error."""

    exit_code = 70


@dataclass(eq=False)
class Value:
    name: str
    type: TensorType
    producer: Node | None = None
    users: list[Node] = field(default_factory=list)
    data: np.ndarray | None = None  # set for constants (weights, biases)

    @property
    def is_const(self) -> bool:
        return self.data is not None

    def __repr__(self) -> str:
        return f"%{self.name}: {self.type}"


@dataclass(eq=False)
class Node:
    name: str
    op: Op
    inputs: list[Value]
    outputs: list[Value]
    # Annotations set by passes and read by the target.
    mapping: MappingChoice | None = None
    lowrank: LowRank | None = None
    wquant: WeightQuant | None = None

    @property
    def output(self) -> Value:
        return self.outputs[0]

    def __repr__(self) -> str:
        ins = ", ".join(f"%{v.name}" for v in self.inputs)
        outs = ", ".join(f"%{v.name}" for v in self.outputs)
        return f"{outs} = {self.op}({ins})  # {self.name}"


class Graph:
    """A dataflow graph. Build it with `const`, `input` and `add`; edit with `replace_uses`."""

    def __init__(self, name: str = "graph") -> None:
        self.name = name
        self.inputs: list[Value] = []
        self.outputs: list[Value] = []
        self.nodes: list[Node] = []
        self._names: set[str] = set()
        self._next_suffix: dict[str, int] = {}

    # -- construction
    def unique(self, base: str) -> str:
        """`base`, or `base_<i>` with the smallest free i >= 1. Names are never released,
        so every suffix below the last one handed out for `base` is taken: probing resumes
        there (amortized O(1); linear probing from 1 made big graphs quadratic)."""
        if base not in self._names:
            self._names.add(base)
            return base
        i = self._next_suffix.get(base, 1)
        while f"{base}_{i}" in self._names:
            i += 1
        name = f"{base}_{i}"
        self._next_suffix[base] = i + 1
        self._names.add(name)
        return name

    def input(self, name: str, type: TensorType) -> Value:
        v = Value(self.unique(name), type)
        self.inputs.append(v)
        return v

    def const(self, name: str, data: np.ndarray) -> Value:
        data = np.ascontiguousarray(data)
        return Value(self.unique(name), TensorType(tuple(data.shape), DType.from_numpy(data.dtype)),
                     data=data)

    def add(self, op: Op, inputs: list[Value], name: str, out_names: list[str] | None = None,
            index: int | None = None) -> Node:
        """Create a node, infer its output types, and link it (appended, or at `index`)."""
        types = op.infer([v.type for v in inputs])
        outs = [Value(self.unique(n), t) for n, t in zip(out_names or [name + "_out"] * len(types),
                                                         types, strict=True)]
        node = Node(self.unique(name), op, list(inputs), outs)
        for o in outs:
            o.producer = node
        for v in inputs:
            v.users.append(node)
        if index is None:
            self.nodes.append(node)
        else:
            self.nodes.insert(index, node)
        return node

    def remove(self, node: Node) -> None:
        for v in node.inputs:
            v.users = [u for u in v.users if u is not node]
        self.nodes.remove(node)

    def replace_uses(self, old: Value, new: Value) -> None:
        for u in old.users:
            u.inputs = [new if v is old else v for v in u.inputs]
            new.users.append(u)
        old.users = []
        self.outputs = [new if v is old else v for v in self.outputs]

    # -- queries
    def crossbar_nodes(self) -> Iterator[Node]:
        return (n for n in self.nodes if n.op.crossbar)

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def __repr__(self) -> str:
        lines = [f"graph {self.name}({', '.join(map(repr, self.inputs))}) {{"]
        lines += [f"  {n!r}" for n in self.nodes]
        lines.append(f"  return {', '.join('%' + v.name for v in self.outputs)}\n}}")
        return "\n".join(lines)


def verify(graph: Graph) -> None:
    """Check the invariants every pass must keep: topological order, consistent
    producer/user links, no dangling values, and stored types equal to inferred ones."""
    known: set[int] = {id(v) for v in graph.inputs}
    for node in graph.nodes:
        for v in node.inputs:
            if not (v.is_const or id(v) in known):
                raise VerifyError(f"{node.name}: input %{v.name} is used before it is defined")
            if not any(u is node for u in v.users):
                raise VerifyError(f"{node.name}: %{v.name} does not list it as a user")
        want = node.op.infer([v.type for v in node.inputs])
        for o, t in zip(node.outputs, want, strict=True):
            if o.producer is not node:
                raise VerifyError(f"{node.name}: output %{o.name} has another producer")
            if o.type != t:
                raise VerifyError(f"{node.name}: output %{o.name} is {o.type}, inferred {t}")
            known.add(id(o))
    for v in graph.outputs:
        if id(v) not in known:
            raise VerifyError(f"graph output %{v.name} is not produced")
    live = {id(n) for n in graph.nodes}
    for node in graph.nodes:
        for o in node.outputs:
            for u in o.users:
                if id(u) not in live:
                    raise VerifyError(f"%{o.name} lists a removed node {u.name} as a user")
