"""Reading ONNX files safely: clear errors for missing/non-ONNX files, and external tensor
data loaded only from inside the model's own directory (no `../`, absolute paths or links
that lead out of it)."""

from __future__ import annotations

import os
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
        if not loc or os.path.isabs(loc) or Path(loc).drive:
            raise ModelError(f"tensor {t.name!r}: external data location {loc!r} must be a "
                             "relative path inside the model's directory")
        target = (base / loc).resolve()
        if base not in target.parents:
            raise ModelError(f"tensor {t.name!r}: external data {loc!r} lies outside the "
                             "model's directory; refused")
        if not target.is_file():
            raise ModelError(f"tensor {t.name!r}: external data file {loc!r} not found")
        try:
            external_data_helper.load_external_data_for_tensor(t, str(base))
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"tensor {t.name!r}: external data unreadable ({exc})") from exc
        t.data_location = onnx.TensorProto.DEFAULT
        del t.external_data[:]
