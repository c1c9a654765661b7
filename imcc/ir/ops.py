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
        return y.astype(x.dtype, copy=False)


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
        return y.astype(xs[0].dtype, copy=False)


# ----------------------------------------------------------------------------- digital ops


class Unary(Op):
    def infer(self, ins: list[TensorType]) -> list[TensorType]:
        return [ins[0]]


@dataclass(frozen=True)
class Relu(Unary):
    kind: ClassVar[str] = "Relu"

    def compute(self, *xs: np.ndarray) -> np.ndarray:
        return np.maximum(xs[0], 0).astype(xs[0].dtype, copy=False)


@dataclass(frozen=True)
class LeakyRelu(Unary):
    kind: ClassVar[str] = "LeakyRelu"
    alpha: float = 0.01

    def compute(self, *xs: np.ndarray) -> np.ndarray:
        x = xs[0]
        return np.where(x >= 0, x, x * np.float32(self.alpha)).astype(x.dtype, copy=False)


@dataclass(frozen=True)
class Sigmoid(Unary):
    kind: ClassVar[str] = "Sigmoid"

    def compute(self, *xs: np.ndarray) -> np.ndarray:
        return (1.0 / (1.0 + np.exp(-xs[0]))).astype(xs[0].dtype, copy=False)


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
        return np.clip(x, lo, hi).astype(x.dtype, copy=False)


@dataclass(frozen=True)
class Softmax(Unary):
    kind: ClassVar[str] = "Softmax"
    axis: int = -1

    def compute(self, *xs: np.ndarray) -> np.ndarray:
        x = xs[0]
        e = np.exp(x - x.max(axis=self.axis, keepdims=True))
        return (e / e.sum(axis=self.axis, keepdims=True)).astype(x.dtype, copy=False)


@dataclass(frozen=True)
class Affine(Unary):
    """Per-channel y = x * scale + shift on axis 1: a BatchNormalization that could not be
    folded into a preceding crossbar layer. Inputs: [x, scale, shift] (constants, shape (C,))."""

    kind: ClassVar[str] = "BatchNormalization"

    def compute(self, *xs: np.ndarray) -> np.ndarray:
        x, sc, sh = xs
        shp = (1, -1) + (1,) * (x.ndim - 2)
        return (x * sc.reshape(shp) + sh.reshape(shp)).astype(x.dtype, copy=False)


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
        return (self.quantize(xs[0]) * np.float32(self.scale)).astype(xs[0].dtype, copy=False)


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
        return self.ufunc(xs[0], xs[1]).astype(xs[0].dtype, copy=False)


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
        return win.max(axis=(4, 5)).astype(x.dtype, copy=False)


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
        return (acc / c).astype(x.dtype, copy=False)


@dataclass(frozen=True)
class GlobalAveragePool(Op):
    kind: ClassVar[str] = "GlobalAveragePool"

    def infer(self, ins: list[TensorType]) -> list[TensorType]:
        x = ins[0]
        return [TensorType(x.shape[:2] + (1,) * (x.rank - 2), x.dtype)]

    def compute(self, *xs: np.ndarray) -> np.ndarray:
        x = xs[0]
        return x.mean(axis=tuple(range(2, x.ndim)), keepdims=True).astype(x.dtype, copy=False)


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
            return np.pad(x, widths, constant_values=self.value).astype(x.dtype, copy=False)
        mode: Literal["reflect", "edge", "wrap"] = {"reflect": "reflect", "edge": "edge",
                                                     "wrap": "wrap"}[self.mode]  # type: ignore[assignment]
        return np.pad(x, widths, mode=mode).astype(x.dtype, copy=False)


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


@dataclass(frozen=True)
class HardSigmoid(Unary):
    """y = max(0, min(1, alpha * x + beta)) (ONNX HardSigmoid)."""

    kind: ClassVar[str] = "HardSigmoid"
    alpha: float = 0.2
    beta: float = 0.5

    def compute(self, *xs: np.ndarray) -> np.ndarray:
        x = xs[0]
        y = x * np.float32(self.alpha) + np.float32(self.beta)
        return np.clip(y, 0, 1).astype(x.dtype, copy=False)


@dataclass(frozen=True)
class HardSwish(Unary):
    """y = x * max(0, min(1, x / 6 + 1/2)) (ONNX HardSwish: HardSigmoid with alpha 1/6)."""

    kind: ClassVar[str] = "HardSwish"

    def compute(self, *xs: np.ndarray) -> np.ndarray:
        x = xs[0]
        y = x * np.clip(x * np.float32(1 / 6) + np.float32(0.5), 0, 1)
        return y.astype(x.dtype, copy=False)


def erf(x: np.ndarray) -> np.ndarray:
    """The error function, elementwise, to float64 precision (numpy has none).

    Maclaurin series ``2/sqrt(pi) * sum_n (-1)^n x^(2n+1) / (n! (2n+1))`` in float64 for
    ``|x| < 4`` (the largest term at |x| = 4 is about 1e5, so cancellation costs at most 5 of
    float64's 16 digits: the error stays below 1e-10), and ``sign(x)`` beyond, where
    ``1 - erf(4) = 1.5e-8`` is below half a float32 ulp of 1."""
    x64 = np.asarray(x, dtype=np.float64)
    a = np.clip(x64, -4.0, 4.0)
    a2 = a * a
    term = a.copy()
    total = a.copy()
    for n in range(1, 100):
        term *= -a2 / n
        total += term / (2 * n + 1)
        if not np.any(np.abs(term) > 1e-17 * (2 * n + 1)):
            break
    y = total * (2.0 / math.sqrt(math.pi))
    return np.where(np.abs(x64) >= 4.0, np.sign(x64), y)


@dataclass(frozen=True)
class Erf(Unary):
    kind: ClassVar[str] = "Erf"

    def compute(self, *xs: np.ndarray) -> np.ndarray:
        return erf(xs[0]).astype(xs[0].dtype, copy=False)


@dataclass(frozen=True)
class Gelu(Unary):
    """ONNX Gelu (opset 20): ``approximate="none"``: ``x/2 * (1 + erf(x / sqrt 2))``;
    ``"tanh"``: ``x/2 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))``. In float64, rounded
    once to float32."""

    kind: ClassVar[str] = "Gelu"
    approximate: str = "none"

    def compute(self, *xs: np.ndarray) -> np.ndarray:
        x = xs[0].astype(np.float64)
        if self.approximate == "tanh":
            inner = math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)
            y = 0.5 * x * (1 + np.tanh(inner))
        else:
            y = 0.5 * x * (1 + erf(x / math.sqrt(2)))
        return y.astype(xs[0].dtype, copy=False)


@dataclass(frozen=True)
class Sqrt(Unary):
    kind: ClassVar[str] = "Sqrt"

    def compute(self, *xs: np.ndarray) -> np.ndarray:
        return np.sqrt(xs[0]).astype(xs[0].dtype, copy=False)


@dataclass(frozen=True)
class Reciprocal(Unary):
    kind: ClassVar[str] = "Reciprocal"

    def compute(self, *xs: np.ndarray) -> np.ndarray:
        return (np.float32(1) / xs[0]).astype(xs[0].dtype, copy=False)


@dataclass(frozen=True)
class LayerNorm(Op):
    """ONNX LayerNormalization over the axes ``axis..rank-1`` (``axis >= 1``; the batch
    axis is never normalized): ``y = (x - mean) / sqrt(var + epsilon) * scale + bias``,
    population variance, statistics in float64 (ONNX's ``stash_type`` 1 computes them in
    float32; the two agree to float32 rounding). Inputs ``[x, scale, bias?]``."""

    kind: ClassVar[str] = "LayerNormalization"
    axis: int
    epsilon: float = 1e-5

    def infer(self, ins: list[TensorType]) -> list[TensorType]:
        return [ins[0]]

    def compute(self, *xs: np.ndarray) -> np.ndarray:
        x = xs[0]
        axes = tuple(range(self.axis, x.ndim))
        x64 = x.astype(np.float64)
        mean = x64.mean(axis=axes, keepdims=True)
        var = ((x64 - mean) ** 2).mean(axis=axes, keepdims=True)
        y = ((x64 - mean) / np.sqrt(var + self.epsilon)).astype(np.float32) * xs[1]
        if len(xs) > 2:
            y = y + xs[2]
        return y.astype(x.dtype, copy=False)


class _Reduce(Op):
    """Reduction over ``axes`` (non-negative, never the batch axis 0), keeping them as
    size-1 axes when ``keepdims``."""

    axes: tuple[int, ...]
    keepdims: bool

    def infer(self, ins: list[TensorType]) -> list[TensorType]:
        x = ins[0]
        if self.keepdims:
            shp = tuple(1 if i in self.axes else d for i, d in enumerate(x.shape))
        else:
            shp = tuple(d for i, d in enumerate(x.shape) if i not in self.axes)
        return [TensorType(shp, x.dtype)]


@dataclass(frozen=True)
class ReduceMean(_Reduce):
    kind: ClassVar[str] = "ReduceMean"
    axes: tuple[int, ...]
    keepdims: bool = True

    def compute(self, *xs: np.ndarray) -> np.ndarray:
        return xs[0].mean(axis=self.axes, keepdims=self.keepdims, dtype=np.float32
                          ).astype(xs[0].dtype)


@dataclass(frozen=True)
class ReduceSum(_Reduce):
    kind: ClassVar[str] = "ReduceSum"
    axes: tuple[int, ...]
    keepdims: bool = True

    def compute(self, *xs: np.ndarray) -> np.ndarray:
        return xs[0].sum(axis=self.axes, keepdims=self.keepdims).astype(xs[0].dtype, copy=False)


@dataclass(frozen=True)
class ReduceMax(_Reduce):
    kind: ClassVar[str] = "ReduceMax"
    axes: tuple[int, ...]
    keepdims: bool = True

    def compute(self, *xs: np.ndarray) -> np.ndarray:
        return xs[0].max(axis=self.axes, keepdims=self.keepdims)


@dataclass(frozen=True)
class Pow(Binary):
    kind: ClassVar[str] = "Pow"
    ufunc: ClassVar[np.ufunc] = np.power


@dataclass(frozen=True)
class Where(Op):
    """``y = cond ? a : b`` with numpy broadcasting; inputs ``[cond (bool), a, b]``."""

    kind: ClassVar[str] = "Where"

    def infer(self, ins: list[TensorType]) -> list[TensorType]:
        return [TensorType(_broadcast(_broadcast(ins[0].shape, ins[1].shape), ins[2].shape),
                           ins[1].dtype)]

    def compute(self, *xs: np.ndarray) -> np.ndarray:
        return np.where(xs[0].astype(bool), xs[1], xs[2]).astype(xs[1].dtype, copy=False)


@dataclass(frozen=True)
class Expand(Op):
    """Broadcast ``x`` to ``(batch,) + sample_shape`` (numpy rules). Inputs ``[x]``: the
    batch is x's own; ``[x, ref]``: x is a constant and the batch is that of the
    activation ``ref`` (e.g. a ViT's class token expanded to the batch)."""

    kind: ClassVar[str] = "Expand"
    sample_shape: tuple[int, ...]

    def infer(self, ins: list[TensorType]) -> list[TensorType]:
        batch = ins[-1].shape[0]
        return [TensorType((batch,) + self.sample_shape, ins[0].dtype)]

    def compute(self, *xs: np.ndarray) -> np.ndarray:
        x = xs[0]
        shape = (xs[-1].shape[0],) + self.sample_shape
        return np.ascontiguousarray(np.broadcast_to(x, shape))


@dataclass(frozen=True)
class Gather(Op):
    """``np.take(x, indices, axis)`` with constant, non-negative indices (``axis >= 1``);
    ``scalar``: one index that removes the axis (an ONNX scalar indices tensor)."""

    kind: ClassVar[str] = "Gather"
    axis: int
    indices: tuple[int, ...]
    scalar: bool = False

    def infer(self, ins: list[TensorType]) -> list[TensorType]:
        shp = list(ins[0].shape)
        mid: list[int | None] = [] if self.scalar else [len(self.indices)]
        return [TensorType(tuple(shp[:self.axis] + mid + shp[self.axis + 1:]), ins[0].dtype)]

    def compute(self, *xs: np.ndarray) -> np.ndarray:
        idx: int | list[int] = self.indices[0] if self.scalar else list(self.indices)
        return np.ascontiguousarray(np.take(xs[0], idx, axis=self.axis))


@dataclass(frozen=True)
class MatMul(Op):
    """A matrix product of two activations (attention scores, attention x values): numpy
    ``matmul`` semantics with the leading (batch) axes broadcast. A digital op: neither
    operand is a stored weight, so it cannot be held in a crossbar. ``macs`` counts its
    multiply-accumulates per sample for the report."""

    kind: ClassVar[str] = "MatMul"

    def infer(self, ins: list[TensorType]) -> list[TensorType]:
        a, b = ins[0].shape, ins[1].shape
        lead = _broadcast(a[:-2], b[:-2])
        return [TensorType(lead + (a[-2], b[-1]), ins[0].dtype)]

    def compute(self, *xs: np.ndarray) -> np.ndarray:
        return np.matmul(xs[0], xs[1]).astype(xs[0].dtype, copy=False)

    @staticmethod
    def macs(a: Shape, b: Shape) -> int:
        """Multiply-accumulates per sample of ``a @ b`` (the batch axis left out)."""
        lead = _broadcast(a[:-2], b[:-2])[1:]
        return int(math.prod(int(d or 1) for d in lead)) * int(a[-2] or 1) * \
            int(a[-1] or 1) * int(b[-1] or 1)


CROSSBAR_OPS: tuple[type[Op], ...] = (Conv, Linear)


def prod(xs: tuple[int, ...] | list[int]) -> int:
    return int(math.prod(xs))


__all__ = [
    "Op", "Conv", "Linear", "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Clip", "Softmax", "Affine",
    "FakeQuant", "Add", "Sub", "Mul", "Div", "MaxPool", "AveragePool", "GlobalAveragePool",
    "GlobalMaxPool", "Pad", "Slice", "Concat", "Reshape", "Transpose", "HardSigmoid",
    "HardSwish", "Erf", "Gelu", "Sqrt", "Reciprocal", "LayerNorm", "ReduceMean", "ReduceSum",
    "ReduceMax", "Pow", "Where", "Expand", "Gather", "MatMul", "erf", "CROSSBAR_OPS",
    "conv_out", "prod", "DType",
]
