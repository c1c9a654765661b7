"""Op kinds of the IR: one frozen dataclass per kind, attributes as typed fields.

Each op states its shape rule (`infer`) and its numpy semantics (`compute`). The numpy
semantics are the reference the simulator's digital ops and the tests rely on; crossbar
ops (Conv, Linear) are executed by the simulator through the emitted program instead.

Inputs of crossbar ops: ``[x, weight, bias?]`` where weight and bias are constant values.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np

from imcc.errors import UnsupportedError
from imcc.ir.types import DType, Shape, TensorType

Pads2 = tuple[int, int, int, int]  # top, left, bottom, right


def conv_out(size: int, k: int, stride: int, pad_lo: int, pad_hi: int, dil: int = 1,
             ceil: bool = False) -> int:
    """Output length of a sliding window (ONNX Conv/Pool convention)."""
    eff = (k - 1) * dil + 1
    num = size + pad_lo + pad_hi - eff
    out = (-(-num // stride) if ceil else num // stride) + 1
    if ceil and (out - 1) * stride >= size + pad_lo:
        out -= 1  # the last window must start inside the input or the leading pad
    return out


class Op(ABC):
    """Base of every op kind."""

    kind: ClassVar[str] = "Op"
    crossbar: ClassVar[bool] = False

    @abstractmethod
    def infer(self, ins: list[TensorType]) -> list[TensorType]:
        """Output types from input types."""

    @abstractmethod
    def compute(self, *xs: np.ndarray) -> np.ndarray:
        """Reference numpy semantics."""


def _windows(x: np.ndarray, kh: int, kw: int, sh: int, sw: int, dh: int, dw: int,
             ho: int, wo: int) -> np.ndarray:
    """View of x (N,C,H,W) as (N,C,ho,wo,kh,kw) sliding windows."""
    n, c, _, _ = x.shape
    s = x.strides
    return np.lib.stride_tricks.as_strided(
        x, (n, c, ho, wo, kh, kw), (s[0], s[1], s[2] * sh, s[3] * sw, s[2] * dh, s[3] * dw),
        writeable=False)


# ---------------------------------------------------------------------------- crossbar ops


@dataclass(frozen=True)
class Conv(Op):
    """2-D convolution, NCHW; weight (OC, IC/group, kh, kw)."""

    kind: ClassVar[str] = "Conv"
    crossbar: ClassVar[bool] = True
    kernel: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    pads: Pads2 = (0, 0, 0, 0)
    dilation: tuple[int, int] = (1, 1)
    group: int = 1

    def out_hw(self, h: int, w: int) -> tuple[int, int]:
        t, lft, b, r = self.pads
        return (conv_out(h, self.kernel[0], self.stride[0], t, b, self.dilation[0]),
                conv_out(w, self.kernel[1], self.stride[1], lft, r, self.dilation[1]))

    def infer(self, ins: list[TensorType]) -> list[TensorType]:
        x, wt = ins[0], ins[1]
        oc = wt.shape[0]
        ho, wo = self.out_hw(int(x.shape[2]), int(x.shape[3]))  # type: ignore[arg-type]
        return [TensorType((x.shape[0], oc, ho, wo), x.dtype)]

    def compute(self, *xs: np.ndarray) -> np.ndarray:
        x, w = xs[0], xs[1]
        t, lft, b, r = self.pads
        xp = np.pad(x, ((0, 0), (0, 0), (t, b), (lft, r)))
        ho, wo = self.out_hw(x.shape[2], x.shape[3])
        g = self.group
        oc, icg = w.shape[0], w.shape[1]
        ocg = oc // g
        outs = []
        for gi in range(g):
            win = _windows(np.ascontiguousarray(xp[:, gi * icg:(gi + 1) * icg]), *self.kernel,
                           *self.stride, *self.dilation, ho, wo)
            outs.append(np.einsum("nchwij,ocij->nohw", win, w[gi * ocg:(gi + 1) * ocg],
                                  optimize=True))
        y = np.concatenate(outs, axis=1)
        if len(xs) > 2:
            y = y + xs[2].reshape(1, -1, 1, 1)
        return y.astype(x.dtype)


@dataclass(frozen=True)
class Linear(Op):
    """y = x @ W.T + b over the last axis; weight (out_features, in_features).

    Imported from Gemm (alpha/beta/transA/transB folded into W and b) and MatMul with a
    constant right operand. A crossbar layer: a 1x1 conv on a 1x1 map per leading position.
    """

    kind: ClassVar[str] = "Linear"
    crossbar: ClassVar[bool] = True

    def infer(self, ins: list[TensorType]) -> list[TensorType]:
        x, wt = ins[0], ins[1]
        return [TensorType(x.shape[:-1] + (wt.shape[0],), x.dtype)]

    def compute(self, *xs: np.ndarray) -> np.ndarray:
        y = xs[0] @ xs[1].T
        if len(xs) > 2:
            y = y + xs[2]
        return y.astype(xs[0].dtype)


# ----------------------------------------------------------------------------- digital ops


class Unary(Op):
    def infer(self, ins: list[TensorType]) -> list[TensorType]:
        return [ins[0]]


@dataclass(frozen=True)
class Relu(Unary):
    kind: ClassVar[str] = "Relu"

    def compute(self, *xs: np.ndarray) -> np.ndarray:
        return np.maximum(xs[0], 0).astype(xs[0].dtype)


@dataclass(frozen=True)
class LeakyRelu(Unary):
    kind: ClassVar[str] = "LeakyRelu"
    alpha: float = 0.01

    def compute(self, *xs: np.ndarray) -> np.ndarray:
        x = xs[0]
        return np.where(x >= 0, x, x * np.float32(self.alpha)).astype(x.dtype)


@dataclass(frozen=True)
class Sigmoid(Unary):
    kind: ClassVar[str] = "Sigmoid"

    def compute(self, *xs: np.ndarray) -> np.ndarray:
        return (1.0 / (1.0 + np.exp(-xs[0]))).astype(xs[0].dtype)


@dataclass(frozen=True)
class Tanh(Unary):
    kind: ClassVar[str] = "Tanh"

    def compute(self, *xs: np.ndarray) -> np.ndarray:
        return np.tanh(xs[0])


@dataclass(frozen=True)
class Clip(Unary):
    kind: ClassVar[str] = "Clip"
    min: float | None = None
    max: float | None = None

    def compute(self, *xs: np.ndarray) -> np.ndarray:
        x = xs[0]
        lo = -np.inf if self.min is None else self.min
        hi = np.inf if self.max is None else self.max
        return np.clip(x, lo, hi).astype(x.dtype)


@dataclass(frozen=True)
class Softmax(Unary):
    kind: ClassVar[str] = "Softmax"
    axis: int = -1

    def compute(self, *xs: np.ndarray) -> np.ndarray:
        x = xs[0]
        e = np.exp(x - x.max(axis=self.axis, keepdims=True))
        return (e / e.sum(axis=self.axis, keepdims=True)).astype(x.dtype)


@dataclass(frozen=True)
class Affine(Unary):
    """Per-channel y = x * scale + shift on axis 1: a BatchNormalization that could not be
    folded into a preceding crossbar layer. Inputs: [x, scale, shift] (constants, shape (C,))."""

    kind: ClassVar[str] = "BatchNormalization"

    def compute(self, *xs: np.ndarray) -> np.ndarray:
        x, sc, sh = xs
        shp = (1, -1) + (1,) * (x.ndim - 2)
        return (x * sc.reshape(shp) + sh.reshape(shp)).astype(x.dtype)


@dataclass(frozen=True)
class FakeQuant(Unary):
    """Uniform quantize-dequantize: q = clip(round_half_even(x / scale), qmin, qmax); y = q * scale.

    Unsigned (after ReLU): q in [0, 2^bits - 1]; signed: q in [-2^(bits-1), 2^(bits-1) - 1].
    Zero point is always 0, so a crossbar layer sees the integer q directly.
    """

    kind: ClassVar[str] = "FakeQuant"
    scale: float
    bits: int
    signed: bool

    @property
    def qrange(self) -> tuple[int, int]:
        if self.signed:
            return -(1 << (self.bits - 1)), (1 << (self.bits - 1)) - 1
        return 0, (1 << self.bits) - 1

    def quantize(self, x: np.ndarray) -> np.ndarray:
        lo, hi = self.qrange
        return np.clip(np.rint(x / np.float32(self.scale)), lo, hi)

    def compute(self, *xs: np.ndarray) -> np.ndarray:
        return (self.quantize(xs[0]) * np.float32(self.scale)).astype(xs[0].dtype)


def _broadcast(a: Shape, b: Shape) -> Shape:
    out: list[int | None] = []
    for i in range(max(len(a), len(b))):
        da = a[len(a) - 1 - i] if i < len(a) else 1
        db = b[len(b) - 1 - i] if i < len(b) else 1
        if da == 1:
            out.append(db)
        elif db == 1 or da == db:
            out.append(da)
        elif da is None or db is None:
            out.append(None)
        else:
            raise UnsupportedError([f"shapes {a} and {b} do not broadcast"])
    return tuple(reversed(out))


class Binary(Op):
    """An elementwise ONNX binary op with numpy broadcasting; `ufunc` is its numpy form."""

    ufunc: ClassVar[np.ufunc]

    def infer(self, ins: list[TensorType]) -> list[TensorType]:
        return [TensorType(_broadcast(ins[0].shape, ins[1].shape), ins[0].dtype)]

    def compute(self, *xs: np.ndarray) -> np.ndarray:
        return self.ufunc(xs[0], xs[1]).astype(xs[0].dtype)


@dataclass(frozen=True)
class Add(Binary):
    kind: ClassVar[str] = "Add"
    ufunc: ClassVar[np.ufunc] = np.add


@dataclass(frozen=True)
class Sub(Binary):
    kind: ClassVar[str] = "Sub"
    ufunc: ClassVar[np.ufunc] = np.subtract


@dataclass(frozen=True)
class Mul(Binary):
    kind: ClassVar[str] = "Mul"
    ufunc: ClassVar[np.ufunc] = np.multiply


@dataclass(frozen=True)
class Div(Binary):
    kind: ClassVar[str] = "Div"
    ufunc: ClassVar[np.ufunc] = np.divide


@dataclass(frozen=True)
class MaxPool(Op):
    kind: ClassVar[str] = "MaxPool"
    kernel: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    pads: Pads2 = (0, 0, 0, 0)
    dilation: tuple[int, int] = (1, 1)
    ceil_mode: bool = False

    def out_hw(self, h: int, w: int) -> tuple[int, int]:
        t, lft, b, r = self.pads
        return (conv_out(h, self.kernel[0], self.stride[0], t, b, self.dilation[0],
                         self.ceil_mode),
                conv_out(w, self.kernel[1], self.stride[1], lft, r, self.dilation[1],
                         self.ceil_mode))

    def infer(self, ins: list[TensorType]) -> list[TensorType]:
        x = ins[0]
        ho, wo = self.out_hw(int(x.shape[2]), int(x.shape[3]))  # type: ignore[arg-type]
        return [TensorType((x.shape[0], x.shape[1], ho, wo), x.dtype)]

    def compute(self, *xs: np.ndarray) -> np.ndarray:
        x = xs[0]
        ho, wo = self.out_hw(x.shape[2], x.shape[3])
        t, lft, _, _ = self.pads
        eh = (ho - 1) * self.stride[0] + (self.kernel[0] - 1) * self.dilation[0] + 1
        ew = (wo - 1) * self.stride[1] + (self.kernel[1] - 1) * self.dilation[1] + 1
        xp = np.full(x.shape[:2] + (max(eh, t + x.shape[2]), max(ew, lft + x.shape[3])), -np.inf,
                     dtype=x.dtype)
        xp[:, :, t:t + x.shape[2], lft:lft + x.shape[3]] = x
        win = _windows(xp, *self.kernel, *self.stride, *self.dilation, ho, wo)
        return win.max(axis=(4, 5)).astype(x.dtype)


@dataclass(frozen=True)
class AveragePool(Op):
    kind: ClassVar[str] = "AveragePool"
    kernel: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    pads: Pads2 = (0, 0, 0, 0)
    ceil_mode: bool = False
    count_include_pad: bool = False

    def out_hw(self, h: int, w: int) -> tuple[int, int]:
        t, lft, b, r = self.pads
        return (conv_out(h, self.kernel[0], self.stride[0], t, b, 1, self.ceil_mode),
                conv_out(w, self.kernel[1], self.stride[1], lft, r, 1, self.ceil_mode))

    def infer(self, ins: list[TensorType]) -> list[TensorType]:
        x = ins[0]
        ho, wo = self.out_hw(int(x.shape[2]), int(x.shape[3]))  # type: ignore[arg-type]
        return [TensorType((x.shape[0], x.shape[1], ho, wo), x.dtype)]

    def compute(self, *xs: np.ndarray) -> np.ndarray:
        x = xs[0]
        ho, wo = self.out_hw(x.shape[2], x.shape[3])
        t, lft, b, r = self.pads
        eh = (ho - 1) * self.stride[0] + self.kernel[0]
        ew = (wo - 1) * self.stride[1] + self.kernel[1]
        hp, wp = max(eh, t + x.shape[2] + b), max(ew, lft + x.shape[3] + r)
        xp = np.zeros(x.shape[:2] + (hp, wp), dtype=np.float32)
        xp[:, :, t:t + x.shape[2], lft:lft + x.shape[3]] = x
        # Which cells count in the divisor: the input, plus the explicit pads if asked;
        # never the extra cells a ceil_mode window hangs over.
        cnt = np.zeros((1, 1, hp, wp), dtype=np.float32)
        if self.count_include_pad:
            cnt[:, :, :t + x.shape[2] + b, :lft + x.shape[3] + r] = 1
        else:
            cnt[:, :, t:t + x.shape[2], lft:lft + x.shape[3]] = 1
        # Accumulate in float32, kernel row by row, as onnxruntime does: its non-overlapping
        # pools (e.g. a final 8x8 average) then match bit for bit, so a quantizer after the
        # pool rounds exactly as compiled.onnx does.
        sh, sw = self.stride
        acc = np.zeros(x.shape[:2] + (ho, wo), dtype=np.float32)
        c = np.zeros((1, 1, ho, wo), dtype=np.float32)
        for ky in range(self.kernel[0]):
            for kx in range(self.kernel[1]):
                sl = (slice(None), slice(None), slice(ky, ky + (ho - 1) * sh + 1, sh),
                      slice(kx, kx + (wo - 1) * sw + 1, sw))
                acc += xp[sl]
                c += cnt[sl]
        return (acc / c).astype(x.dtype)


@dataclass(frozen=True)
class GlobalAveragePool(Op):
    kind: ClassVar[str] = "GlobalAveragePool"

    def infer(self, ins: list[TensorType]) -> list[TensorType]:
        x = ins[0]
        return [TensorType(x.shape[:2] + (1,) * (x.rank - 2), x.dtype)]

    def compute(self, *xs: np.ndarray) -> np.ndarray:
        x = xs[0]
        return x.mean(axis=tuple(range(2, x.ndim)), keepdims=True).astype(x.dtype)


@dataclass(frozen=True)
class GlobalMaxPool(Op):
    kind: ClassVar[str] = "GlobalMaxPool"

    def infer(self, ins: list[TensorType]) -> list[TensorType]:
        x = ins[0]
        return [TensorType(x.shape[:2] + (1,) * (x.rank - 2), x.dtype)]

    def compute(self, *xs: np.ndarray) -> np.ndarray:
        x = xs[0]
        return x.max(axis=tuple(range(2, x.ndim)), keepdims=True)


@dataclass(frozen=True)
class Pad(Op):
    """Pad with begin/end counts per axis (ONNX layout: all begins, then all ends)."""

    kind: ClassVar[str] = "Pad"
    pads: tuple[int, ...]
    mode: str = "constant"
    value: float = 0.0

    def infer(self, ins: list[TensorType]) -> list[TensorType]:
        x = ins[0]
        r = x.rank
        shp = tuple(None if d is None else d + self.pads[i] + self.pads[i + r]
                    for i, d in enumerate(x.shape))
        return [TensorType(shp, x.dtype)]

    def compute(self, *xs: np.ndarray) -> np.ndarray:
        x = xs[0]
        r = x.ndim
        # Negative pads crop, as ONNX allows.
        sl = tuple(slice(max(0, -self.pads[i]), x.shape[i] - max(0, -self.pads[i + r]))
                   for i in range(r))
        x = x[sl]
        widths = [(max(0, self.pads[i]), max(0, self.pads[i + r])) for i in range(r)]
        if self.mode == "constant":
            return np.pad(x, widths, constant_values=self.value).astype(x.dtype)
        mode: Literal["reflect", "edge", "wrap"] = {"reflect": "reflect", "edge": "edge",
                                                     "wrap": "wrap"}[self.mode]  # type: ignore[assignment]
        return np.pad(x, widths, mode=mode).astype(x.dtype)


@dataclass(frozen=True)
class Slice(Op):
    """Static slice; starts/ends already clamped to [0, dim] (or -1 for reverse to the front)."""

    kind: ClassVar[str] = "Slice"
    starts: tuple[int, ...]
    ends: tuple[int, ...]
    axes: tuple[int, ...]
    steps: tuple[int, ...]

    def _slices(self, rank: int) -> tuple[slice, ...]:
        sl = [slice(None)] * rank
        for s, e, a, st in zip(self.starts, self.ends, self.axes, self.steps, strict=True):
            sl[a] = slice(s, None if e < 0 else e, st)
        return tuple(sl)

    def infer(self, ins: list[TensorType]) -> list[TensorType]:
        x = ins[0]
        shp = list(x.shape)
        for s, e, a, st in zip(self.starts, self.ends, self.axes, self.steps, strict=True):
            d = shp[a]
            if d is None:
                raise UnsupportedError([f"Slice on the dynamic batch axis {a}"])
            shp[a] = len(range(d)[slice(s, None if e < 0 else e, st)])
        return [TensorType(tuple(shp), x.dtype)]

    def compute(self, *xs: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(xs[0][self._slices(xs[0].ndim)])


@dataclass(frozen=True)
class Concat(Op):
    kind: ClassVar[str] = "Concat"
    axis: int

    def infer(self, ins: list[TensorType]) -> list[TensorType]:
        shp = list(ins[0].shape)
        shp[self.axis] = sum(int(t.shape[self.axis] or 0) for t in ins)
        return [TensorType(tuple(shp), ins[0].dtype)]

    def compute(self, *xs: np.ndarray) -> np.ndarray:
        return np.concatenate(xs, axis=self.axis)


@dataclass(frozen=True)
class Reshape(Op):
    """Reshape to a static per-sample shape; the batch dimension is carried through."""

    kind: ClassVar[str] = "Reshape"
    sample_shape: tuple[int, ...]

    def infer(self, ins: list[TensorType]) -> list[TensorType]:
        return [TensorType((ins[0].shape[0],) + self.sample_shape, ins[0].dtype)]

    def compute(self, *xs: np.ndarray) -> np.ndarray:
        return xs[0].reshape((xs[0].shape[0],) + self.sample_shape)


@dataclass(frozen=True)
class Transpose(Op):
    """Transpose that keeps the batch axis first (perm[0] == 0)."""

    kind: ClassVar[str] = "Transpose"
    perm: tuple[int, ...]

    def infer(self, ins: list[TensorType]) -> list[TensorType]:
        return [TensorType(tuple(ins[0].shape[p] for p in self.perm), ins[0].dtype)]

    def compute(self, *xs: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.transpose(xs[0], self.perm))


CROSSBAR_OPS: tuple[type[Op], ...] = (Conv, Linear)


def prod(xs: tuple[int, ...] | list[int]) -> int:
    return int(math.prod(xs))


__all__ = [
    "Op", "Conv", "Linear", "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Clip", "Softmax", "Affine",
    "FakeQuant", "Add", "Sub", "Mul", "Div", "MaxPool", "AveragePool", "GlobalAveragePool",
    "GlobalMaxPool", "Pad", "Slice", "Concat", "Reshape", "Transpose", "CROSSBAR_OPS",
    "conv_out", "prod", "DType",
]
