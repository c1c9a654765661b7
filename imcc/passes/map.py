"""The `map` pass: choose each crossbar layer's mapping (im2col or a parallel window).

For every crossbar node (Conv, Linear) it sets `node.mapping` to the choice of
`imcc.targets.cost.best_mapping` for the requested strategy on the target array
(`rows x cols`, `S` = the layer's own columns per weight), a layout of the tiling model
(`imcc.targets.tiling`) whose cycle count the choice records. A Linear is a 1x1 conv whose
map is `positions x 1` (`imcc.targets.tiling.node_geometry`).

Low-rank pairs are mapped jointly (`best_pair_mapping`, Theorem 2:
SDK(L R) = (I_N (x) L) SDK(R)): both halves get the same window, the one minimizing
cycles(R) + cycles(L), each half costed with its own slices per weight. A pair is
  * a node annotated `LowRank(role=R, partner=P)` and the node `P` (annotated role L),
    as the lowrank pass leaves them; or
  * a model that arrived factorized: a Conv (any kernel, stride, padding, groups) whose
    output has exactly one user, that user being a 1x1 Conv with stride 1, no padding,
    group 1 and dilation 1 reading it as its data input. Single-user FakeQuant nodes in
    between are looked through (elementwise, so window alignment is unchanged); this keeps
    the result independent of whether quantization ran first. Such pairs are not
    annotated with `LowRank`; they are only mapped jointly. Pairs are claimed in
    topological order, so in a chain of such convs each node is in at most one pair.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from imcc.ir import Graph, Node, PairRole, VerifyError
from imcc.ir.ops import Conv, FakeQuant
from imcc.ir.records import MappingRecord
from imcc.passes.base import CompileContext, Contract, Pass, PassResult, option
from imcc.targets.cost import MappingRequest, best_mapping, best_pair_mapping
from imcc.targets.tiling import node_geometry, node_slices


def _is_pointwise_follower(op: object) -> bool:
    return (isinstance(op, Conv) and op.kernel == (1, 1) and op.stride == (1, 1)
            and op.pads == (0, 0, 0, 0) and op.group == 1 and op.dilation == (1, 1))


def _factorized_partner(node: Node) -> Node | None:
    """The 1x1 conv that alone consumes `node`'s output (through single-user FakeQuants)."""
    if not isinstance(node.op, Conv):
        return None
    value = node.output
    while True:
        if len(value.users) != 1:
            return None
        user = value.users[0]
        if isinstance(user.op, FakeQuant):
            value = user.output
            continue
        if _is_pointwise_follower(user.op) and user.inputs[0] is value:
            return user
        return None


def find_pairs(graph: Graph) -> list[tuple[Node, Node]]:
    """(R, L) pairs to map jointly, in topological order of R (see the module docstring).
    Raises VerifyError if LowRank annotations are inconsistent."""
    by_name = {n.name: n for n in graph.nodes}
    pairs: list[tuple[Node, Node]] = []
    claimed: set[int] = set()
    for node in graph.crossbar_nodes():
        lr = node.lowrank
        if lr is None:
            continue
        partner = by_name.get(lr.partner)
        if (partner is None or partner.lowrank is None or partner.lowrank.partner != node.name
                or partner.lowrank.role is lr.role or not partner.op.crossbar):
            raise VerifyError(f"{node.name}: low-rank {lr.role.value} half names partner "
                              f"{lr.partner!r}, which is not its matching crossbar half")
        if lr.role is PairRole.R:
            pairs.append((node, partner))
            claimed.update((id(node), id(partner)))
    for node in graph.crossbar_nodes():
        if id(node) in claimed or node.lowrank is not None:
            continue
        partner = _factorized_partner(node)
        if partner is None or id(partner) in claimed or partner.lowrank is not None:
            continue
        pairs.append((node, partner))
        claimed.update((id(node), id(partner)))
    return pairs


@dataclass(frozen=True)
class MapPass(Pass):
    """Set `node.mapping` on every crossbar node for `strategy` (im2col | sdk | vw-sdk |
    auto) on the context's target (`ctx.target`); low-rank pairs share one window (see the
    module docstring). Returns a `MappingRecord` naming the strategy."""

    name: ClassVar[str] = "map"
    summary: ClassVar[str] = ("lay every crossbar layer out on the target's arrays with a "
                              "mapping strategy; low-rank pairs share one window")
    contract: ClassVar[Contract] = Contract(
        forbids=frozenset({"mapped"}), ensures=frozenset({"mapped"}),
        why="it maps the final layers onto arrays, so it runs last")
    strategy: str = option("auto", help="crossbar mapping: im2col, sdk (square parallel "
                           "windows), vw-sdk (any window) or auto (the cheapest per layer)")

    def __post_init__(self) -> None:
        MappingRequest.parse(self.strategy)  # a bad value fails here, listing valid ones

    @property
    def request(self) -> MappingRequest:
        return MappingRequest.parse(self.strategy)

    def run(self, graph: Graph, ctx: CompileContext) -> PassResult:
        target = ctx.target
        req = self.request
        rows, cols = target.rows, target.cols
        done: set[int] = set()
        for r_node, l_node in find_pairs(graph):
            rg, lg = node_geometry(r_node), node_geometry(l_node)
            if not lg.is_pointwise or (lg.ho, lg.wo) != (rg.ho, rg.wo) or lg.ic != rg.oc:
                raise VerifyError(f"low-rank pair {r_node.name} -> {l_node.name}: the second "
                                  f"half must be a 1x1 stride-1 layer on the first's output "
                                  f"({rg.oc} channels, {rg.ho}x{rg.wo})")
            # One window for both halves, each tiled with its own slices per weight.
            choice_r, _, choice_l, _ = best_pair_mapping(
                rg, lg, req, rows, cols, node_slices(r_node, target),
                node_slices(l_node, target))
            r_node.mapping, l_node.mapping = choice_r, choice_l
            done.update((id(r_node), id(l_node)))
        for node in graph.crossbar_nodes():
            if id(node) not in done:
                node.mapping, _ = best_mapping(node_geometry(node), req, rows, cols,
                                               node_slices(node, target))
        return PassResult(graph, modified=next(graph.crossbar_nodes(), None) is not None,
                          records=(MappingRecord(self.strategy),))


__all__ = ["MapPass", "node_geometry", "node_slices", "find_pairs"]
