"""fold-bn: fold a per-channel affine (an inference BatchNormalization) into the crossbar
layer that produces its input.

    y = (W x + b) * a + c  ==  (diag(a) W) x + (a b + c)

Legal when the producer is a Conv (channel axis 1) or a 2-D Linear (features on axis 1)
whose output has no other user. Otherwise the affine stays a digital op.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from imcc.ir import Graph
from imcc.ir import ops as O
from imcc.passes.base import CompileContext, Contract, Pass, PassResult


@dataclass(frozen=True)
class FoldBatchNorm(Pass):
    """Fold every per-channel affine (inference batch norm) into the Conv or Linear that
    produces it, y = (diag(a) W) x + (a b + c); others stay digital ops. No options."""

    name: ClassVar[str] = "fold-bn"
    summary: ClassVar[str] = ("fold batch norms into the Conv/Linear before them: "
                              "y = (diag(a) W) x + (a b + c); no options")
    contract: ClassVar[Contract] = Contract(
        forbids=frozenset({"bn-folded", "quantized", "mapped"}), ensures=frozenset({"bn-folded"}),
        why="it folds batch norms into float weights, before they are quantized and mapped")

    def run(self, graph: Graph, ctx: CompileContext) -> PassResult:
        folded = 0
        for node in list(graph.nodes):
            if not isinstance(node.op, O.Affine):
                continue
            x, sc, sh = node.inputs
            prod = x.producer
            if prod is None or len(x.users) != 1 or x in graph.outputs:
                continue
            if not (isinstance(prod.op, O.Conv) or
                    (isinstance(prod.op, O.Linear) and x.type.rank == 2)):
                continue
            a = sc.data.astype(np.float64)  # type: ignore[union-attr]
            c = sh.data.astype(np.float64)  # type: ignore[union-attr]
            w = prod.inputs[1].data.astype(np.float64)  # type: ignore[union-attr]
            w = w * a.reshape((-1,) + (1,) * (w.ndim - 1))
            b = prod.inputs[2].data.astype(np.float64) if len(prod.inputs) > 2 else 0.0  # type: ignore[union-attr]
            new_w = graph.const(prod.inputs[1].name, w.astype(np.float32))
            new_b = graph.const(prod.name + ".bias", (a * b + c).astype(np.float32))
            for old in prod.inputs[1:]:
                old.users = [u for u in old.users if u is not prod]
            prod.inputs = [prod.inputs[0], new_w, new_b]
            new_w.users.append(prod)
            new_b.users.append(prod)
            graph.replace_uses(node.output, x)
            graph.remove(node)
            folded += 1
        return PassResult(graph, modified=folded > 0)
