"""Run the imcc CLI on bad inputs and write docs/bad-inputs.md from what it actually does.

    python scripts/bad_inputs.py            # run every case, write docs/bad-inputs.md
    python scripts/bad_inputs.py --check    # exit 1 if a case misbehaves or the doc is stale

Every case runs `python -m imcc.cli ...` in a fresh temporary directory holding only the
case's inputs. The properties checked (also by tests/test_bad_inputs.py, which imports
`CASES` and `check` from here):

* the exit code is non-zero and one the case documents (README: 2 usage, 3 model,
  4 data/budget/tech, 5 output);
* stderr is exactly one line, and there is no "Traceback";
* the directory afterwards holds exactly the inputs, byte for byte: no output directory,
  no temporary or partial files, and an existing output directory is left untouched.

A case with `known_issue` set documents a defect in code outside this script's remit; it
is reported in the table and expected to fail the checks until fixed.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from imcc.report.progress import without_progress

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "bad-inputs.md"
TIMEOUT_S = 120
# Address-space cap for every run (bytes): a case that tried to allocate the tensors it
# declares (terabytes) would fail with MemoryError -> exit 70 instead of being refused.
MEMORY_LIMIT = 3 << 30

# -------------------------------------------------------------------------- input builders


def _model(nodes: list[onnx.NodeProto], inputs: list[onnx.ValueInfoProto],
           outputs: list[str], inits: dict[str, np.ndarray], opset: int = 17
           ) -> onnx.ModelProto:
    g = helper.make_graph(nodes, "bad", inputs,
                          [helper.make_tensor_value_info(o, TensorProto.FLOAT, None)
                           for o in outputs],
                          initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def _x(shape: list[int | str], name: str = "x") -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _w(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def tiny_model() -> onnx.ModelProto:
    """A valid conv -> relu -> flatten -> gemm network on 3x8x8 inputs."""
    return _model(
        [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], name="conv"),
         helper.make_node("Relu", ["c"], ["r"], name="relu"),
         helper.make_node("Flatten", ["r"], ["f"], name="flatten"),
         helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], transB=1, name="fc")],
        [_x(["N", 3, 8, 8])], ["y"],
        {"w": _w(4, 3, 3, 3), "b": _w(4, seed=1), "fw": _w(10, 256, seed=2),
         "fb": _w(10, seed=3)})


def _save(d: Path, name: str, m: onnx.ModelProto) -> str:
    (d / name).write_bytes(m.SerializeToString())
    return name


def _tiny(d: Path) -> str:
    return _save(d, "model.onnx", tiny_model())


def _external(d: Path, location: str) -> str:
    """The tiny model with its conv weight stored as external data at `location`."""
    m = tiny_model()
    w = next(t for t in m.graph.initializer if t.name == "w")
    w.ClearField("float_data")
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", "0"), ("length", str(4 * 4 * 3 * 3 * 3))):
        e = w.external_data.add()
        e.key, e.value = k, v
    return _save(d, "model.onnx", m)


def _compiled(d: Path) -> str:
    """A real compiled output directory (in-process compile of the tiny model)."""
    from imcc.compiler import CompileOptions, compile_model, write_outputs

    _tiny(d)
    write_outputs(compile_model(str(d / "model.onnx"), CompileOptions(quantize=False)),
                  d / "out")
    return "out"


def _npz(d: Path, name: str, **arrays: np.ndarray) -> str:
    with open(d / name, "wb") as f:
        np.savez(f, **arrays)  # type: ignore[arg-type]
    return name


def _text(d: Path, name: str, text: str) -> str:
    (d / name).write_text(text)
    return name


def _bytes(d: Path, name: str, data: bytes) -> str:
    (d / name).write_bytes(data)
    return name


# --------------------------------------------------------------------------------- cases

Setup = Callable[[Path], list[str]]


@dataclass(frozen=True)
class BadInput:
    name: str            # stable identifier (test id)
    what: str            # the input, for the table
    setup: Setup         # writes the inputs into the directory, returns the CLI arguments
    codes: tuple[int, ...]
    must_mention: tuple[str, ...] = ()  # substrings the message must contain
    known_issue: str = ""               # a defect elsewhere (file: what), expected to fail


def _c(name: str, what: str, setup: Setup, codes: int | tuple[int, ...],
       must_mention: tuple[str, ...] = (), known_issue: str = "") -> BadInput:
    return BadInput(name, what, setup, codes if isinstance(codes, tuple) else (codes,),
                    must_mention, known_issue)


def _two_unsupported(d: Path) -> list[str]:
    # Two independent branches, so each op is reported in its own right.
    # One crossbar op (ConvTranspose) and one digital op (Hardmax): the message says which.
    m = _model([helper.make_node("ConvTranspose", ["x", "w"], ["a"], name="deconv"),
                helper.make_node("Hardmax", ["x"], ["b"], name="hardmax"),
                helper.make_node("Add", ["a", "b"], ["y"], name="add")],
               [_x(["N", 3, 8, 8])], ["y"], {"w": _w(3, 3, 1, 1)})
    return ["compile", _save(d, "two_ops.onnx", m)]


def _dynamic_spatial(d: Path) -> list[str]:
    m = _model([helper.make_node("Conv", ["x", "w"], ["y"], name="conv")],
               [_x(["N", 3, "H", "W"])], ["y"], {"w": _w(4, 3, 3, 3)})
    return ["compile", _save(d, "dynamic.onnx", m)]


def _weight_input(d: Path) -> list[str]:
    m = _model([helper.make_node("Conv", ["x", "w"], ["y"], name="conv")],
               [_x(["N", 3, 8, 8]), _x([4, 3, 3, 3], "w")], ["y"], {})
    return ["compile", _save(d, "weights_input.onnx", m)]


def _cycle(d: Path) -> list[str]:
    m = _model([helper.make_node("Add", ["x", "b"], ["a"], name="add"),
                helper.make_node("Relu", ["a"], ["b"], name="relu")],
               [_x(["N", 3, 8, 8])], ["a"], {})
    return ["compile", _save(d, "cycle.onnx", m)]


def _absurd_conv(d: Path) -> list[str]:
    m = _model([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1], name="conv")],
               [_x(["N", 3, 1_000_000, 1_000_000])], ["y"], {"w": _w(4, 3, 3, 3)})
    return ["compile", _save(d, "huge.onnx", m)]


def _absurd_pad(d: Path) -> list[str]:
    m = _model([helper.make_node("Pad", ["x", "p"], ["y"], name="pad")],
               [_x(["N", 3, 8, 8])], ["y"],
               {"p": np.array([0, 0, 10**9, 10**9, 0, 0, 10**9, 10**9], np.int64)})
    return ["compile", _save(d, "huge_pad.onnx", m)]


def _custom_domain(d: Path) -> list[str]:
    m = _model([helper.make_node("MyOp", ["x"], ["y"], domain="com.example", name="mine")],
               [_x(["N", 3, 8, 8])], ["y"], {})
    m.opset_import.append(helper.make_opsetid("com.example", 1))
    return ["compile", _save(d, "custom.onnx", m)]


def _tensor_file(d: Path) -> list[str]:
    t = numpy_helper.from_array(_w(2, 2), "t")
    return ["compile", _bytes(d, "tensor.onnx", t.SerializeToString())]


def _symlink_out(d: Path) -> list[str]:
    # The link target is outside the case directory (which is all the check may touch),
    # in a sibling directory removed with the whole run.
    outside = d.parent / f"{d.name}-outside"
    outside.mkdir()
    (outside / "secret.bin").write_bytes(bytes(4 * 108))
    os.symlink(outside / "secret.bin", d / "w.bin")
    return ["compile", _external(d, "w.bin")]


def _model_dir(d: Path) -> list[str]:
    (d / "models").mkdir()
    return ["compile", "models"]


def _not_an_output(d: Path) -> list[str]:
    (d / "empty").mkdir()
    return ["simulate", "empty"]


def _user_dir_as_output(d: Path) -> list[str]:
    (d / "thesis").mkdir()
    _text(d, "thesis/ch1.tex", "keep\n")
    return ["compile", _tiny(d), "-o", "thesis"]


def _report_json_dir(d: Path) -> list[str]:
    (d / "thesis" / "chapters").mkdir(parents=True)
    _text(d, "thesis/report.json", "{}\n")
    _text(d, "thesis/chapters/ch1.tex", "keep\n")
    return ["compile", _tiny(d), "-o", "thesis"]


def _model_inside_output(d: Path) -> list[str]:
    out = _compiled(d)
    (d / out / "mymodel.onnx").write_bytes(tiny_model().SerializeToString())
    return ["compile", f"{out}/mymodel.onnx", "-o", out]


def _swapped_compiled_onnx(d: Path) -> list[str]:
    out = _compiled(d)
    m = tiny_model()
    for t in m.graph.initializer:
        t.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(t), t.name))
    (d / out / "compiled.onnx").write_bytes(m.SerializeToString())
    return ["simulate", out, "--data", _npz(d, "d.npz", x=np.zeros((2, 3, 8, 8), np.float32))]


def _malformed(d: Path, edit: Callable[[onnx.ModelProto], None]) -> list[str]:
    m = tiny_model()
    edit(m)
    return ["compile", _save(d, "bad.onnx", m)]


def _two_producers(m: onnx.ModelProto) -> None:
    m.graph.node.append(helper.make_node("Relu", [m.graph.node[0].input[0]],
                                         [m.graph.node[0].output[0]], name="twin"))


def _dup_initializer(m: onnx.ModelProto) -> None:
    m.graph.initializer.append(m.graph.initializer[0])


def _opset99(m: onnx.ModelProto) -> None:
    m.opset_import[0].version = 99


def _batch0(m: onnx.ModelProto) -> None:
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 0


def _existing_out(d: Path, extra: list[str]) -> list[str]:
    (d / "out").mkdir()
    (d / "out" / "report.json").write_text('{"keep": "me"}\n')
    return ["compile", *extra, "-o", "out"]


def _bad_program(d: Path) -> list[str]:
    out = _compiled(d)
    (d / out / "program.json").write_text('{"format": "imcc-program/1"}\n')
    return ["simulate", out]


def _bad_compiled_onnx(d: Path) -> list[str]:
    out = _compiled(d)
    onnx_file = d / out / "compiled.onnx"
    onnx_file.write_bytes(onnx_file.read_bytes()[:100])
    return ["simulate", out, "--data",
            _npz(d, "d.npz", x=np.zeros((2, 3, 8, 8), np.float32))]


def _bad_report(d: Path) -> list[str]:
    out = _compiled(d)
    (d / out / "report.json").write_text("{not json")
    return ["report", out]


_GOOD_TECH = """name = "t"
source = "test"
t_read_ns = 1.0
e_adc_8b_pj = 1.0
adc_scale_per_bit = 2.0
e_row_pj = 1.0
e_cell_fj = 1.0
e_shift_add_pj = 1.0
e_buffer_pj_per_bit = 1.0
n_adc_per_array = 0
f_adc_ghz = 1.0
"""

CASES: list[BadInput] = [
    # --- model files
    _c("empty_file", "empty file", lambda d: ["compile", _bytes(d, "m.onnx", b"")], 3),
    _c("truncated_model", "valid model truncated to half its bytes",
       lambda d: ["compile", _bytes(d, "m.onnx",
                                    tiny_model().SerializeToString()[:5000])], 3),
    _c("random_bytes", "4 KiB of random bytes",
       lambda d: ["compile", _bytes(d, "m.onnx",
                                    np.random.default_rng(7).bytes(4096))], 3),
    _c("text_file", "a text file named .onnx",
       lambda d: ["compile", _text(d, "m.onnx", "this is not a model\n")], 3),
    _c("json_file", "a JSON file",
       lambda d: ["compile", _text(d, "model.json", '{"graph": 1}\n')], 3),
    _c("tensor_not_model", "a serialized ONNX tensor, not a model", _tensor_file, 3),
    _c("directory", "a directory as the model", _model_dir, 3),
    _c("missing_path", "a path that does not exist", lambda d: ["compile", "nope.onnx"], 3),
    # --- model contents
    _c("two_unsupported_ops", "a model with two unsupported ops (ConvTranspose, Hardmax)",
       _two_unsupported, 3, ("ConvTranspose", "Hardmax", "crossbar op", "digital op")),
    _c("custom_domain", "an op from a custom domain", _custom_domain, 3, ("com.example",)),
    _c("dynamic_spatial", "input N x 3 x H x W (dynamic spatial size)", _dynamic_spatial, 3,
       ("dynamic",)),
    _c("weights_not_constant", "Conv weight fed as a graph input", _weight_input, 3,
       ("constant",)),
    _c("graph_cycle", "a graph with a cycle (Add <-> Relu)", _cycle, 3, ("cycle",)),
    _c("absurd_conv", "Conv declared on a 1e6 x 1e6 input", _absurd_conv, 3, ("too large",)),
    _c("absurd_pad", "Pad by 1e9 on each spatial side", _absurd_pad, 3, ("too large",)),
    # --- external data
    _c("external_parent", "external data at ../secret.bin",
       lambda d: ["compile", _external(d, "../secret.bin")], 3, ("outside",)),
    _c("external_absolute", "external data at /etc/passwd (absolute)",
       lambda d: ["compile", _external(d, "/etc/passwd")], 3, ("relative",)),
    _c("external_symlink", "external data via a symlink that leads out", _symlink_out, 3,
       ("outside",)),
    _c("external_nul", "external data location with a NUL byte",
       lambda d: ["compile", _external(d, "w\0.bin")], 3, ("NUL",)),
    _c("external_long", "external data location of 5000 characters",
       lambda d: ["compile", _external(d, "w" * 5000)], 3, ("4096",)),
    _c("external_missing", "external data file missing",
       lambda d: ["compile", _external(d, "w.bin")], 3, ("not found",)),
    # --- option values
    *[_c(f"option_{slug}", f"`{' '.join(opt)}`",
         (lambda o: lambda d: ["compile", _tiny(d), *o])(opt), 2)
      for slug, opt in (("target_0x128", ["--target", "0x128"]),
                        ("target_abc", ["--target", "abc"]),
                        ("target_128x", ["--target", "128x"]),
                        ("target_huge", ["--target", "100000x100000"]),
                        ("rank_m0", ["--rank", "m/0"]),
                        ("rank_neg", ["--rank", "-3"]),
                        ("rank_text", ["--rank", "half"]),
                        ("groups_0", ["--groups", "0"]),
                        ("weight_bits_0", ["--weight-bits", "0"]),
                        ("weight_bits_64", ["--weight-bits", "64"]),
                        ("act_bits_1", ["--act-bits", "1"]),
                        ("act_bits_17", ["--act-bits", "17"]),
                        ("cell_gt_weight", ["--cell-bits", "8", "--weight-bits", "4"]),
                        ("mapping_bogus", ["--mapping", "diagonal"]),
                        ("layer_rank_syntax", ["--layer-rank", "conv"]),
                        ("first_last_bits_1", ["--first-last-bits", "1"]),
                        ("calib_limit_0", ["--calib-limit", "0"]))],
    _c("option_groups_not_int", "`--groups abc` (not an integer)",
       lambda d: ["compile", _tiny(d), "--groups", "abc"], 2),
    _c("policy_bad", "`--policy` file with an unknown key",
       lambda d: ["compile", _tiny(d), "--policy",
                  _text(d, "p.json", '{"rank": "m/2", "colour": 1}\n')], 4),
    # --- data, budget and tech files
    _c("calib_text", "`--calib` a text file",
       lambda d: ["compile", _tiny(d), "--calib", _text(d, "c.npz", "1,2,3\n")], 4),
    _c("calib_missing", "`--calib` a missing file",
       lambda d: ["compile", _tiny(d), "--calib", "none.npz"], 4),
    _c("calib_wrong_shape", "`--calib` x of shape 2x3x4x4 (model wants Nx3x8x8)",
       lambda d: ["compile", _tiny(d), "--calib",
                  _npz(d, "c.npz", x=np.zeros((2, 3, 4, 4), np.float32))], 4),
    _c("calib_pickle", "`--calib` holding a pickled object array",
       lambda d: ["compile", _tiny(d), "--calib",
                  _npz(d, "c.npz", x=np.array([{"a": 1}], dtype=object))], 4, ("pickle",)),
    _c("data_truncated", "`--data` a truncated .npz",
       lambda d: ["simulate", _compiled(d), "--data",
                  _bytes(d, "d.npz", _npz_bytes(x=np.zeros((2, 3, 8, 8), np.float32))[:200])],
       4),
    _c("data_nan", "`--data` x with NaN",
       lambda d: ["simulate", _compiled(d), "--data",
                  _npz(d, "d.npz", x=np.full((2, 3, 8, 8), np.nan, np.float32))], 4),
    _c("data_no_input", "`--data` without an input array",
       lambda d: ["simulate", _compiled(d), "--data",
                  _npz(d, "d.npz", labels=np.zeros(2, np.int64))], 4),
    _c("budget_bad_toml", "`--budget` malformed TOML",
       lambda d: ["check", _compiled(d), "--budget", _text(d, "b.toml", "[budget\ncycles=")],
       2),
    _c("budget_negative", "`--budget` with a negative cycle limit",
       lambda d: ["check", _compiled(d), "--budget",
                  _text(d, "b.toml", "[budget]\ncycles = -5\n")], 2),
    _c("budget_missing", "`--budget` a missing file",
       lambda d: ["check", _compiled(d), "--budget", "none.toml"], 2),
    _c("tech_bad_toml", "`--tech` malformed TOML",
       lambda d: ["compile", _tiny(d), "--tech", _text(d, "t.toml", "name = \n")], 4),
    _c("tech_bad_value", "`--tech` with n_adc_per_array = 0",
       lambda d: ["compile", _tiny(d), "--tech", _text(d, "t.toml", _GOOD_TECH)], 4),
    _c("tech_unknown", "`--tech` neither a built-in name nor a file",
       lambda d: ["compile", _tiny(d), "--tech", "graphene"], 4),
    # --- compiled outputs and output paths
    _c("simulate_not_output", "`simulate` on a directory that is not a compile output",
       _not_an_output, 4),
    _c("report_corrupt", "`report` on an output whose report.json is corrupt", _bad_report, 4),
    _c("program_tampered", "`simulate` on an output whose program.json lacks its steps",
       _bad_program, 4),
    _c("compiled_onnx_truncated", "`simulate` on an output whose compiled.onnx is truncated",
       _bad_compiled_onnx, 4, ("compiled output",)),
    _c("output_is_file", "`-o` names an existing file",
       lambda d: ["compile", _tiny(d), "-o", _text(d, "taken", "x\n")], 5),
    _c("output_under_file", "`-o` below an existing file",
       lambda d: ["compile", _tiny(d), "-o", f"{_text(d, 'taken', 'x')}/out"], 5),
    _c("output_user_dir", "`-o` an existing directory of someone's files (not an output)",
       _user_dir_as_output, 5, ("refusing",)),
    _c("existing_out_bad_model", "failing compile (bad model) into an existing `-o out`",
       lambda d: _existing_out(d, [_bytes(d, "m.onnx", b"\x00garbage")]), 3),
    _c("existing_out_bad_option", "failing compile (bad option) into an existing `-o out`",
       lambda d: _existing_out(d, [_tiny(d), "--weight-bits", "0"]), 2),
    _c("output_has_report_json", "`-o thesis` where thesis/ holds a report.json and a "
       "chapters/ folder", _report_json_dir, 5, ("not written by imcc",)),
    _c("model_inside_output", "`compile out/mymodel.onnx -o out` (out/ an earlier output)",
       _model_inside_output, 5, ("would delete it",)),
    _c("output_name_too_long", "`-o` a 300-character name",
       lambda d: ["compile", _tiny(d), "-o", "o" * 300], 5, ("unusable output path",)),
    _c("compiled_onnx_swapped", "`simulate` after compiled.onnx was replaced by another "
       "model's", _swapped_compiled_onnx, 4, ("changed since imcc wrote",)),
    # --- malformed models onnxruntime refuses
    _c("two_producers", "two nodes write the same value",
       lambda d: _malformed(d, _two_producers), 3, ("written by 2 nodes",)),
    _c("duplicate_initializer", "an initializer defined twice",
       lambda d: _malformed(d, _dup_initializer), 3, ("defined 2 times",)),
    _c("opset_99", "opset 99", lambda d: _malformed(d, _opset99), 3, ("newer",)),
    _c("batch_0", "a batch dimension of 0", lambda d: _malformed(d, _batch0), 3,
       ("dimension 0 = 0",)),
    # --- numbers that would come out NaN
    _c("data_std_tiny", "`--data` images with std = 1e-45",
       lambda d: ["simulate", _compiled(d), "--data",
                  _npz(d, "d.npz", images=np.full((2, 3, 8, 8), 128, np.uint8),
                       mean=np.zeros(3, np.float32), std=np.full(3, 1e-45, np.float32))],
       4, ("not finite",)),
    _c("data_header_2e40", "`--data` whose .npy header declares 2^40 samples",
       lambda d: ["simulate", _compiled(d), "--data", _bytes(d, "d.npz", _liar_npz())], 4,
       ("declares shape",)),
    _c("tech_1e308", "`--tech` with e_adc_8b_pj = 1e308",
       lambda d: ["compile", _tiny(d), "--tech",
                  _text(d, "t.toml", _GOOD_TECH.replace("n_adc_per_array = 0",
                                                        "n_adc_per_array = 1")
                        .replace("e_adc_8b_pj = 1.0", "e_adc_8b_pj = 1e308"))], 4,
       ("at most",)),
    _c("budget_nested", "`--budget` nested 5000 levels deep",
       lambda d: ["check", _compiled(d), "--budget",
                  _text(d, "b.toml", "a = " + "[" * 5000 + "]" * 5000 + "\n")], 2),
]


def _liar_npz() -> bytes:
    import io
    import zipfile

    hdr = io.BytesIO()
    np.lib.format.write_array_header_1_0(hdr, {"descr": "<f4", "fortran_order": False,
                                               "shape": (1 << 40, 3, 8, 8)})
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("x.npy", b"\x93NUMPY\x01\x00" + hdr.getvalue()[8:] + b"\0" * 64)
    return buf.getvalue()


def _npz_bytes(**arrays: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


# ------------------------------------------------------------------------------- running


@dataclass
class Observation:
    case: BadInput
    argv: list[str]
    code: int
    stderr: str
    stdout: str
    changed: list[str]   # paths added, removed or modified in the case directory

    @property
    def message(self) -> str:
        return self.stderr.strip()

    def problems(self) -> list[str]:
        """Every violated property (empty: the case behaves)."""
        out: list[str] = []
        if self.code not in self.case.codes:
            out.append(f"exit code {self.code}, expected {'/'.join(map(str, self.case.codes))}")
        if self.code == 0 or self.code not in (2, 3, 4, 5):
            out.append(f"exit code {self.code} is not a documented error code")
        lines = without_progress(self.stderr)
        if len(lines) != 1:
            out.append(f"stderr has {len(lines)} lines, expected one")
        if "Traceback" in self.stderr or "Traceback" in self.stdout:
            out.append("a traceback was printed")
        for s in self.case.must_mention:
            if s.lower() not in self.stderr.lower():
                out.append(f"the message does not mention {s!r}")
        if self.changed:
            out.append(f"files changed: {', '.join(self.changed)}")
        return out


def _snapshot(d: Path) -> dict[str, str]:
    """Relative path -> content digest (or 'dir' / link target) of everything under d."""
    snap: dict[str, str] = {}
    for p in sorted(d.rglob("*")):
        rel = str(p.relative_to(d))
        if p.is_symlink():
            snap[rel] = "link:" + os.readlink(p)
        elif p.is_dir():
            snap[rel] = "dir"
        else:
            snap[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return snap


def run(case: BadInput, workdir: Path) -> Observation:
    """Prepare `case` in the empty directory `workdir`, run the CLI there, observe."""
    argv = case.setup(workdir)
    before = _snapshot(workdir)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200", "NO_COLOR": "1"}
    env.pop("FORCE_COLOR", None)
    cmd = [sys.executable, "-m", "imcc.cli", *argv]
    if os.name == "posix":
        # The shell applies the cap and execs Python (preexec_fn is unsafe with threads).
        cmd = ["sh", "-c", f'ulimit -v {MEMORY_LIMIT >> 10} && exec "$0" "$@"', *cmd]
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT_S)
    after = _snapshot(workdir)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    return Observation(case, argv, proc.returncode, proc.stderr, proc.stdout, changed)


def run_all(cases: list[BadInput] = CASES, jobs: int = 2) -> list[Observation]:
    """Run every case in its own temporary directory (`jobs` at a time)."""
    with tempfile.TemporaryDirectory(prefix="imcc-bad-") as top:
        def one(i: int) -> Observation:
            d = Path(top) / f"case{i:03d}"
            d.mkdir()
            return run(cases[i], d)

        with ThreadPoolExecutor(max_workers=jobs) as pool:
            return list(pool.map(one, range(len(cases))))


# ------------------------------------------------------------------------------ the table


def _cell(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ⏎ ").strip()


def render(observations: list[Observation]) -> str:
    lines = [
        "# Bad inputs",
        "",
        "<!-- Generated by `python scripts/bad_inputs.py`; do not edit by hand. -->",
        "",
        "Generated by `python scripts/bad_inputs.py`, which runs `python -m imcc.cli` on each "
        "input below in a fresh directory and records the exit code and the message on "
        "stderr. `tests/test_bad_inputs.py` runs the same cases and checks that each one "
        "exits with a documented non-zero code (2 usage, 3 model, 4 data/budget/tech/compiled "
        "output, 5 output), prints one line and no traceback, and leaves the directory "
        "exactly as it was (no output directory or partial files; an existing output "
        "directory untouched). Paths in messages are relative to that directory.",
        "",
        "| # | input | command | exit | message on stderr | ok |",
        "|---:|---|---|---:|---|---|",
    ]
    for i, o in enumerate(observations, 1):
        probs = o.problems()
        ok = "yes" if not probs else "**no**: " + "; ".join(probs)
        lines.append(f"| {i} | {_cell(o.case.what)} | `imcc {_cell(' '.join(o.argv))}` | "
                     f"{o.code} | {_cell(o.message)} | {_cell(ok)} |")
    issues = [o for o in observations if o.case.known_issue]
    if issues:
        lines += ["", "## Known issues", ""]
        lines += [f"- `{o.case.name}`: {o.case.known_issue}." for o in issues]
    return "\n".join(lines) + "\n"


def check(observations: list[Observation]) -> list[str]:
    """Failures: cases that misbehave without a known issue, or known issues now fixed."""
    out = []
    for o in observations:
        probs = o.problems()
        if probs and not o.case.known_issue:
            out.append(f"{o.case.name}: {'; '.join(probs)} -- stderr: {o.stderr.strip()!r}")
        elif not probs and o.case.known_issue:
            out.append(f"{o.case.name}: behaves now; drop its known_issue")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true",
                    help="do not write; exit 1 on a misbehaving case or a stale doc")
    args = ap.parse_args(argv)
    obs = run_all()
    text = render(obs)
    failures = check(obs)
    for f in failures:
        print(f"FAIL {f}", file=sys.stderr)
    known = sum(bool(o.case.known_issue) for o in obs)
    print(f"{len(obs)} bad inputs: {len(obs) - known - len(failures)} behave as documented, "
          f"{known} known issues, {len(failures)} failures")
    if args.check:
        stale = (DOC.read_text() if DOC.is_file() else "") != text
        if stale:
            print(f"{DOC.relative_to(ROOT)} is stale: run python scripts/bad_inputs.py",
                  file=sys.stderr)
        return 1 if failures or stale else 0
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text)
    print(f"wrote {DOC.relative_to(ROOT)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
