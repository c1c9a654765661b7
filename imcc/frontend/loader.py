"""Reading ONNX files safely: clear errors for missing/non-ONNX files, external tensor
data loaded only from inside the model's own directory (no `../`, absolute paths or links
that lead out of it), and validation (`validate_model`) of what onnxruntime would refuse
but a permissive reader would silently accept: two producers of one value, duplicate
node names, initializers or attributes, a missing or unknown opset, zero or negative dimensions, and
whatever `onnx.checker`'s full check (with shape inference) rejects."""

from __future__ import annotations

import math
import os
from collections import Counter
from pathlib import Path

import onnx
from google.protobuf.message import Message
from onnx import external_data_helper

from imcc.errors import ModelError

MAX_MODEL_BYTES = 2 << 30  # protobuf's own limit


def load_onnx(path: str | Path) -> onnx.ModelProto:
    p = Path(path)
    if not p.exists():
        raise ModelError(f"{p}: no such file", hint="give the path to an .onnx file, or "
                                                    "'resnet20' for the bundled example")
    if p.is_dir():
        raise ModelError(f"{p}: is a directory, not an ONNX file")
    size = p.stat().st_size
    if size == 0:
        raise ModelError(f"{p}: the file is empty")
    if size > MAX_MODEL_BYTES:
        raise ModelError(f"{p}: {size} bytes is larger than an ONNX protobuf can be")
    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError and others
        raise ModelError(f"{p}: not a readable ONNX model ({type(exc).__name__})") from exc
    if not model.HasField("graph") or not model.graph.node:
        raise ModelError(f"{p}: not an ONNX model (no graph nodes)")
    if _bad_text(model):
        raise ModelError(f"{p}: malformed ONNX model (a name or attribute string is not "
                         "valid UTF-8)")
    _load_external(model, p.resolve().parent)
    return model


def _bad_text(msg: Message) -> bool:
    """Whether a string field holds invalid UTF-8. protobuf then returns `bytes` instead of
    `str`, which would break every later use of the name. Tensor payloads are not walked
    (only their names), to avoid copying large raw data."""
    if isinstance(msg, onnx.TensorProto):
        return isinstance(msg.name, bytes) or any(
            isinstance(e.key, bytes) or isinstance(e.value, bytes) for e in msg.external_data)
    for fd, value in msg.ListFields():
        # protobuf >= 6 has `is_repeated`; older releases only `label`.
        repeated = fd.is_repeated if hasattr(fd, "is_repeated") else \
            fd.label == fd.LABEL_REPEATED
        values = value if repeated else [value]
        if fd.type == fd.TYPE_STRING:
            if any(isinstance(v, bytes) for v in values):
                return True
        elif fd.type == fd.TYPE_MESSAGE and any(_bad_text(v) for v in values):
            return True
    return False


def _load_external(model: onnx.ModelProto, base: Path) -> None:
    for t in external_data_helper._get_all_tensors(model):  # noqa: SLF001 - no public walker
        if not external_data_helper.uses_external_data(t):
            continue
        info = {e.key: e.value for e in t.external_data}
        loc = info.get("location", "")
        if "\0" in loc or len(loc) > 4096:
            raise ModelError(f"tensor {t.name!r}: external data location {loc[:60]!r}... is "
                             "not a usable file name (a NUL byte, or over 4096 characters)")
        if not loc or os.path.isabs(loc) or Path(loc).drive:
            raise ModelError(f"tensor {t.name!r}: external data location {loc!r} must be a "
                             "relative path inside the model's directory")
        try:
            target = (base / loc).resolve()
            found = target.is_file()
        except (OSError, ValueError) as exc:
            raise ModelError(f"tensor {t.name!r}: external data location {loc[:60]!r} is "
                             f"unusable ({exc})") from None
        if base not in target.parents:
            raise ModelError(f"tensor {t.name!r}: external data {loc!r} lies outside the "
                             "model's directory; refused")
        if not found:
            raise ModelError(f"tensor {t.name!r}: external data file {loc!r} not found")
        try:
            external_data_helper.load_external_data_for_tensor(t, str(base))
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"tensor {t.name!r}: external data unreadable ({exc})") from exc
        t.data_location = onnx.TensorProto.DEFAULT
        del t.external_data[:]


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    text = next((ln for ln in lines if not ln.startswith("==>")), lines[0] if lines else "")
    return text[:300]


def validate_model(model: onnx.ModelProto) -> None:
    """Refuse (ModelError, all problems of a kind at once) a model onnxruntime would not
    run as written; see the module docstring."""
    problems: list[str] = []
    default = [o for o in model.opset_import if o.domain in ("", "ai.onnx")]
    known = onnx.defs.onnx_opset_version()
    if not default:
        problems.append("no opset_import for the default ONNX domain")
    elif default[0].version > known:
        problems.append(f"opset {default[0].version} is newer than the newest this onnx "
                        f"release knows ({known})")
    elif default[0].version < 1:
        problems.append(f"opset {default[0].version} is not a valid version")
    g = model.graph
    inits = Counter(t.name for t in g.initializer)
    problems += [f"initializer {n!r} is defined {c} times" for n, c in sorted(inits.items())
                 if c > 1]
    for t in g.initializer:
        if any(d < 0 for d in t.dims):
            problems.append(f"initializer {t.name!r} has a negative dimension {list(t.dims)}")
    producers = Counter(o for n in g.node for o in n.output if o)
    graph_inputs = {v.name for v in g.input}
    for name, c in sorted(producers.items()):
        if c > 1:
            problems.append(f"value {name!r} is written by {c} nodes")
        if name in inits or name in graph_inputs:
            problems.append(f"value {name!r} is both a node output and a graph "
                            f"{'initializer' if name in inits else 'input'}")
    names = Counter(n.name for n in g.node if n.name)
    twice = sorted(n for n, c in names.items() if c > 1)
    if twice:
        shown = ", ".join(map(repr, twice[:5])) + (f" and {len(twice) - 5} more"
                                                   if len(twice) > 5 else "")
        problems.append(f"node name{'s' if len(twice) > 1 else ''} {shown} used by more than "
                        "one node")
    for n in g.node:
        dup = [a for a, c in Counter(a.name for a in n.attribute).items() if c > 1]
        if dup:
            problems.append(f"{n.op_type} node {n.name or n.output[0]!r} repeats attribute"
                            f"{'s' if len(dup) > 1 else ''} {', '.join(dup)}")
    for v in g.input:  # (empty outputs of valid ops are the importer's to judge)
        for i, d in enumerate(v.type.tensor_type.shape.dim):
            if d.HasField("dim_value") and d.dim_value <= 0:
                problems.append(f"graph input {v.name!r} has dimension {i} = {d.dim_value}")
    if problems:
        raise ModelError("malformed ONNX model: " + "; ".join(problems))


def check_onnx(model: onnx.ModelProto) -> None:
    """onnx.checker on a model imcc could translate (so unsupported ops have been listed,
    all at once, before the checker could name just the first)."""
    try:
        # The checker's full check, except that graph outputs may leave their shape to
        # inference (ONNX allows it, exporters do it, onnxruntime runs it; the checker
        # alone would demand it): infer strictly first, then check the inferred model.
        skeleton = _skeleton(model)
        inferred = onnx.shape_inference.infer_shapes(skeleton, check_type=True,
                                                     strict_mode=True)
        onnx.checker.check_model(inferred)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ModelError(f"malformed ONNX model (onnx checker): {_first_line(exc)}") from None


SKELETON_ELEMENTS = 4096  # initializers larger than this are checked here, not copied


def _skeleton(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` with every large initializer turned into a graph input of the same type and
    shape, for the checker and shape inference. Both serialize the model (the checker
    twice, with inference), so on VGG-11 (531 MB of weights) the full model cost 1.6 GB
    of copies; shapes are all they need from a weight (small initializers, which may feed
    Reshape or Slice, stay as they are). What the checker would verify of the data is
    verified here: exactly one data field, of the size the shape and type need."""
    skel = onnx.ModelProto()
    graph = model.graph
    big = [t for t in graph.initializer if math.prod(t.dims) > SKELETON_ELEMENTS]
    if not big:
        skel.CopyFrom(model)
        return skel
    for fd, value in model.ListFields():
        if fd.name != "graph":
            _assign(skel, fd, value)
    names = {t.name for t in big}
    for fd, value in graph.ListFields():
        if fd.name != "initializer":
            _assign(skel.graph, fd, value)
    skel.graph.initializer.extend(t for t in graph.initializer if t.name not in names)
    listed = {v.name for v in graph.input}
    for t in big:
        _check_tensor_data(t)
        if t.name not in listed:
            skel.graph.input.append(onnx.helper.make_tensor_value_info(
                t.name, t.data_type, list(t.dims)))
    return skel


def _repeated(fd: object) -> bool:
    return bool(fd.is_repeated if hasattr(fd, "is_repeated")  # type: ignore[attr-defined]
                else fd.label == fd.LABEL_REPEATED)  # type: ignore[attr-defined]


def _assign(msg: Message, fd: object, value: object) -> None:
    name = fd.name  # type: ignore[attr-defined]
    if _repeated(fd):
        getattr(msg, name).extend(value)  # type: ignore[arg-type]
    elif fd.type == fd.TYPE_MESSAGE:  # type: ignore[attr-defined]
        getattr(msg, name).CopyFrom(value)
    else:
        setattr(msg, name, value)


_DATA_FIELDS = ("float_data", "int32_data", "string_data", "int64_data", "double_data",
                "uint64_data")


def _check_tensor_data(t: onnx.TensorProto) -> None:
    """The checker's rule for an initializer's payload: one value field, large enough."""
    if t.data_location == onnx.TensorProto.EXTERNAL:
        return  # loaded already (`_load_external`)
    fields = [f for f in _DATA_FIELDS if len(getattr(t, f))] + (
        ["raw_data"] if t.HasField("raw_data") else [])
    if len(fields) != 1:
        raise onnx.checker.ValidationError(
            f"TensorProto (tensor name: {t.name}) should contain one and only one value field.")
    n = math.prod(t.dims)
    packed = {getattr(onnx.TensorProto, k) for k in ("INT4", "UINT4", "FLOAT4E2M1")
              if hasattr(onnx.TensorProto, k)}  # two values per byte
    if fields[0] == "raw_data" and t.data_type not in packed:
        size = onnx.helper.tensor_dtype_to_np_dtype(t.data_type).itemsize * n
        if len(t.raw_data) < size:
            raise onnx.checker.ValidationError(
                f"TensorProto (tensor name: {t.name}) raw_data size ({len(t.raw_data)} bytes)"
                f" is too small for the declared shape and type ({size} bytes required).")
    elif len(getattr(t, fields[0])) < n:
        raise onnx.checker.ValidationError(
            f"TensorProto (tensor name: {t.name}) {fields[0]} size is too small for the "
            f"declared shape ({n} values required).")
