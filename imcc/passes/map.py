"""The `map` pass: choose each crossbar layer's mapping (im2col or a parallel window).

For every crossbar node (Conv, Linear) it sets `node.mapping` to the choice of
`imcc.targets.cost.best_mapping` for the requested strategy on the target array
(`rows x cols`, `S = target.slices` columns per weight). A Linear is a 1x1 conv whose map
is `positions x 1`, `positions` being the product of the dimensions between batch and
features (1 for a (batch, features) input).

Low-rank pairs are mapped jointly (`best_pair_mapping`, Theorem 2:
SDK(L R) = (I_N (x) L) SDK(R)): both halves get the same window, the one minimizing
cycles(R) + cycles(L). A pair is
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
from imcc.ir.ops import Conv, FakeQuant, Linear
from imcc.ir.records import MappingRecord
from imcc.passes.base import CompileContext, Pass, PassResult
from imcc.targets.cost import LayerGeom, MappingRequest, best_mapping, best_pair_mapping
from imcc.targets.crossbar import CrossbarTarget


def node_geometry(node: Node) -> LayerGeom:
    """The cost-model geometry of a crossbar node (Conv or Linear), per sample."""
    op = node.op
    if isinstance(op, Conv):
        x_shape = node.inputs[0].type.shape
        w = node.inputs[1]
        out_shape = node.output.type.shape
        return LayerGeom.from_conv(
            ic=int(x_shape[1]),  # type: ignore[arg-type]
            oc=int(w.type.shape[0]),  # type: ignore[arg-type]
            groups=op.group, kernel=op.kernel, stride=op.stride, dilation=op.dilation,
            out_hw=(int(out_shape[2]), int(out_shape[3])))  # type: ignore[arg-type]
    if isinstance(op, Linear):
        x_shape = node.inputs[0].type.shape
        w_shape = node.inputs[1].type.shape
        # Dimensions between batch and features are independent positions sharing W.
        positions = 1
        for d in x_shape[1:-1]:
            positions *= int(d)  # type: ignore[arg-type]
        return LayerGeom.from_linear(int(w_shape[1]), int(w_shape[0]),  # type: ignore[arg-type]
                                     positions=max(1, positions))
    raise VerifyError(f"{node.name}: {op.kind} is not a crossbar op")


def node_slices(node: Node, target: CrossbarTarget) -> int:
    """Columns per weight of this layer: its own quantized width (e.g. an 8-bit first
    layer), else the target's."""
    return target.slices_for(node.wquant.bits if node.wquant else target.weight_bits)


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
    strategy: str = "auto"

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
            # One window for both halves; it must fit the wider-sliced half.
            s = max(node_slices(r_node, target), node_slices(l_node, target))
            choice_r, _, choice_l, _ = best_pair_mapping(rg, lg, req, rows, cols, s)
            r_node.mapping, l_node.mapping = choice_r, choice_l
            done.update((id(r_node), id(l_node)))
        for node in graph.crossbar_nodes():
            if id(node) not in done:
                node.mapping, _ = best_mapping(node_geometry(node), req, rows, cols,
                                               node_slices(node, target))
        return PassResult(graph, modified=next(graph.crossbar_nodes(), None) is not None,
                          records=(MappingRecord(self.strategy),))


__all__ = ["MapPass", "node_geometry", "node_slices", "find_pairs"]
