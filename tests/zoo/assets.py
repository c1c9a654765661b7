"""Real exported graphs, shipped small: the large float tensors of an ONNX export are
stripped (`strip`) and regenerated deterministically when a test loads them (`restore`).

A zoo export is mostly weights (tens of MB) around a graph of a few hundred KB. `strip`
keeps the graph exactly as the exporter wrote it -- every node, attribute, value_info, the
opset (only the dynamo exporter's per-node source locations are dropped), and every
integer or small float tensor (shape constants, axes, HardSigmoid's alpha, LayerNorm
epsilons, ...) verbatim -- and replaces each float tensor of more than
`MAX_KEPT` elements by its shape and dtype plus three statistics of the original values,
written as JSON into the tensor's ``doc_string``: mean, standard deviation, and whether
all values were >= 0. `restore` draws each stripped tensor from a normal distribution
with that mean and deviation (absolute values for non-negative tensors, e.g. variances),
seeded by the tensor's name, so the regenerated network has the export's weight scales
(the exporters fold BatchNorm into the convolution weights, so a folded He-initialized
network keeps activations of order one) and is identical on every machine.
"""

from __future__ import annotations

import json
import zlib

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

MAX_KEPT = 64          # float tensors up to this many elements are kept verbatim
MARK = "imcc-stripped"  # key of the statistics in a stripped tensor's doc_string
FLOATS = (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16)


def _tensors(model: onnx.ModelProto) -> list[onnx.TensorProto]:
    """Every tensor of the main graph: initializers and Constant nodes' values."""
    out = list(model.graph.initializer)
    for node in model.graph.node:
        if node.op_type == "Constant":
            out += [a.t for a in node.attribute if a.name == "value"]
    return out


def strip(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` with its large float tensors replaced by their statistics."""
    small = onnx.ModelProto()
    small.CopyFrom(model)
    for node in small.graph.node:
        # The dynamo exporter's per-node source locations (most of a Swin export's bytes);
        # they are not part of the graph's meaning.
        del node.metadata_props[:]
    for t in _tensors(small):
        if t.data_type not in FLOATS or int(np.prod(t.dims, dtype=np.int64)) <= MAX_KEPT:
            continue
        a = numpy_helper.to_array(t).astype(np.float64)
        stats = {"mean": float(a.mean()), "std": float(a.std()),
                 "nonneg": bool((a >= 0).all())}
        dims, dtype, name = list(t.dims), t.data_type, t.name
        t.Clear()
        t.name, t.data_type = name, dtype
        t.dims.extend(dims)
        t.doc_string = json.dumps({MARK: stats}, sort_keys=True)
    return small


def is_stripped(t: onnx.TensorProto) -> bool:
    return t.doc_string.startswith("{") and MARK in t.doc_string


def restore(model: onnx.ModelProto, seed: int = 0, zeros: float = 0.0) -> onnx.ModelProto:
    """A copy of a stripped model with every stripped tensor regenerated (see the module
    docstring); the same ``seed`` gives byte-identical tensors. ``zeros``: the standard
    deviation to draw tensors that were all zero with (torchvision zero-initializes ViT's
    class token and classifier head: restored as zeros, every logit is 0 and a comparison
    checks nothing)."""
    full = onnx.ModelProto()
    full.CopyFrom(model)
    for t in _tensors(full):
        if not is_stripped(t):
            continue
        stats = json.loads(t.doc_string)[MARK]
        # The name, not the position, seeds the tensor: stable if the graph is re-ordered.
        rng = np.random.default_rng([seed, zlib.crc32(t.name.encode())])
        std = stats["std"] or (zeros if stats["mean"] == 0 else 0.0)
        a = rng.normal(stats["mean"], std, size=tuple(t.dims))
        if stats["nonneg"]:
            a = np.abs(a)
        dtype = onnx.helper.tensor_dtype_to_np_dtype(t.data_type)
        t.CopyFrom(numpy_helper.from_array(a.astype(dtype), t.name))
    return full


def resize(model: onnx.ModelProto, height: int, width: int) -> onnx.ModelProto:
    """A copy of ``model`` whose (N, C, H, W) input takes ``height x width`` images, for the
    tests to run real export graphs on small inputs. Only the input's declared size changes
    (and the exporter's recorded intermediate shapes, which would contradict it, are
    dropped); a graph that hard-codes its spatial sizes (e.g. a dynamo export's channel
    shuffle reshapes) is refused by imcc's shape folding, so a size it cannot take fails
    loudly rather than being tested as something else."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    inits = {t.name for t in out.graph.initializer}
    v = next(i for i in out.graph.input if i.name not in inits)
    dims = v.type.tensor_type.shape.dim
    dims[2].Clear()
    dims[2].dim_value = height
    dims[3].Clear()
    dims[3].dim_value = width
    del out.graph.value_info[:]
    return out
