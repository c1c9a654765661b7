"""Where a network's multiply-accumulates run: on crossbars or in the digital periphery.

A MAC (multiply-accumulate) is one product summed into an output of a matrix product, per
image. Crossbar layers (Conv, Linear) compute theirs in the arrays:
``Ho * Wo * OC * (IC / groups) * Kh * Kw`` for a Conv and ``positions * in * out`` for a
Linear (a factorized pair counts both halves, as compiled). A product of two activations
(the digital MatMul: attention scores and attention x values) cannot be held in a crossbar,
so its ``lead * M * K * N`` MACs run digitally. Other digital ops (elementwise, pooling,
normalization, softmax) are not matrix products and count no MACs. The crossbar share is
crossbar MACs / all MACs.

The counts are read off the program alone (the shapes of digital values inferred from its
inputs and steps), so a program read back from program.json gives the same figures.
"""

from __future__ import annotations

from imcc.ir import ops as O
from imcc.ir.types import DType, Shape, TensorType
from imcc.report.model import MacEntry, MacSummary
from imcc.targets.program import CrossbarLayer, DigitalStep, Program

__all__ = ["crossbar_macs", "mac_summary", "program_shapes"]


def crossbar_macs(layer: CrossbarLayer) -> int:
    """MACs per image of one crossbar layer (its weight's rows x columns per window)."""
    from imcc.report.build import layer_geom

    g = layer_geom(layer)
    return g.oc * g.ic_g * g.kh * g.kw * g.ho * g.wo


def program_shapes(program: Program) -> dict[str, Shape]:
    """The shape (batch None) of every value the program computes, by name."""
    shapes: dict[str, Shape] = {name: (None, *shape[1:]) for name, shape in program.inputs}
    for step in program.steps:
        if isinstance(step, CrossbarLayer):
            shapes[step.output] = (None, *step.out_shape)
            continue
        ins = [TensorType(tuple(step.consts[n].shape), DType.from_numpy(step.consts[n].dtype))
               if n in step.consts else TensorType(shapes[n]) for n in step.inputs]
        for name, t in zip(step.outputs, step.op.infer(ins), strict=False):
            shapes[name] = t.shape
    return shapes


def _digital_macs(step: DigitalStep, shapes: dict[str, Shape]) -> int:
    def shape(n: str) -> Shape:
        return tuple(step.consts[n].shape) if n in step.consts else shapes[n]

    return O.MatMul.macs(shape(step.inputs[0]), shape(step.inputs[1]))


def mac_summary(program: Program) -> MacSummary:
    """Every matrix product of the program in order, with where it runs and its MACs."""
    shapes = program_shapes(program)
    ops: list[MacEntry] = []
    for step in program.steps:
        if isinstance(step, CrossbarLayer):
            ops.append(MacEntry(step.name, step.op, "crossbar", crossbar_macs(step)))
        elif isinstance(step.op, O.MatMul):
            ops.append(MacEntry(step.name, step.op.kind, "digital",
                                _digital_macs(step, shapes)))
    return MacSummary(tuple(ops))
