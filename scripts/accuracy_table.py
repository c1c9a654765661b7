"""Measure the compiled ResNet-20's accuracy and write docs/accuracy.md.

    python scripts/accuracy_table.py                 # everything (~15 min on 2 cores)
    python scripts/accuracy_table.py --no-grid       # only the baseline rows
    python scripts/accuracy_table.py --policy tuned.toml[=LABEL] ...   # add policy rows
    python scripts/accuracy_table.py --tuned-only --tuned T.json ...  # only the tuned section

Calibrates on images 0-249 of the bundled CIFAR-10 sample and evaluates on images 250-499
by simulating the emitted crossbar program (`imcc.sim.evaluate.evaluate`, what
`imcc simulate` runs), checked against onnxruntime on compiled.onnx. Rows: float, W4A4,
W4A4 with 8-bit first/last layers, then the grid groups {1,2,4,8} x ranks {m/2..m/16} x
low-rank method {svd, data} at W4A4 with 8-bit first/last layers, then one row per
``--policy`` file (e.g. the policy `imcc tune` writes), each with its wall times.

``--tuned FILE`` (repeatable) reads what `imcc tune ... --json` printed: the tuner's own
verified figures and wall time, and its policy, which is then compiled (calibrated on
images 0-249, at the tuner's target) and simulated on images 250-499, which the tuner never
saw. At each ``--dominance TARGET`` (default 32x32) that a tuned policy has, the script also
measures the uniform data-aware grid (groups x ranks, W4A4, 8-bit first/last) and checks
that none of it dominates the policy (fewer cycles and a higher top-1). ``--tuned-only``
measures only that and replaces the "Tuned per-layer policies" section of the existing
output file.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# One BLAS thread, as the CLI pins it: on a shared 2-core machine more threads are slower.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from imcc.compiler import CompileOptions, compile_model, write_outputs  # noqa: E402
from imcc.dataset import Dataset, bundled_example_data, load_npz  # noqa: E402
from imcc.fileio import atomic_write_bytes  # noqa: E402
from imcc.passes.lowrank import LowRankPass, policy_bits  # noqa: E402
from imcc.report.model import Report  # noqa: E402
from imcc.sim.evaluate import evaluate  # noqa: E402
from imcc.targets.crossbar import CrossbarTarget  # noqa: E402

CALIB_IMAGES = 250          # images [0, 250) calibrate, [250, 500) evaluate
GROUPS = (1, 2, 4, 8)
RANKS = ("m/2", "m/4", "m/8", "m/16")
METHODS = ("svd", "data")
FL = 8                      # bits of the first and last layers in the grid


@dataclass(frozen=True)
class Row:
    label: str
    flags: str                    # the `imcc compile` flags of the row
    options: dict[str, Any]       # CompileOptions fields (calib added by `measure`)
    calib: bool = True


@dataclass(frozen=True)
class Result:
    row: Row
    top1: float
    float_top1: float
    agreement: float
    max_diff: float
    cycles: int
    speedup: float | None
    rel_error: float | None
    data_error: float | None
    compile_s: float
    simulate_s: float


def baseline_rows() -> list[Row]:
    return [
        Row("float", "--no-quantize", {"quantize": False}),
        Row("W4A4", "", {}),
        Row(f"W4A4, {FL}-bit first/last", f"--first-last-bits {FL}", {"first_last_bits": FL}),
        Row(f"m/2 g4 W4A4 {FL}-bit first/last, no calibration data (SVD, RTN)",
            f"--first-last-bits {FL} --rank m/2 --groups 4 (no --calib)",
            {"first_last_bits": FL, "lowrank": LowRankPass(rank="m/2", groups=4)},
            calib=False),
    ]


def grid_rows() -> list[Row]:
    rows = []
    for g in GROUPS:
        for r in RANKS:
            for method in METHODS:
                flags = (f"--first-last-bits {FL} --rank {r} --groups {g} "
                         f"--lowrank-method {method}")
                rows.append(Row(f"{r} | {g} | {method}", flags, {
                    "first_last_bits": FL,
                    "lowrank": LowRankPass(rank=r, groups=g, method=method)}))
    return rows


def _policy_options(path: Path | str, target: str | None = None) -> dict[str, Any]:
    """CompileOptions fields of a policy file as `imcc compile --policy` reads it (its
    first/last bits, default 8 here, and per-layer bits)."""
    fl, bits = policy_bits(path)
    opts: dict[str, Any] = {"first_last_bits": FL if fl is None else fl, "layer_bits": bits,
                            "lowrank": LowRankPass.policy_from_file(path)}
    if target is not None:
        opts["target"] = CrossbarTarget(*CrossbarTarget.parse_shape(target))
    return opts


def policy_rows(specs: list[str]) -> list[Row]:
    rows = []
    for spec in specs:
        path, _, label = spec.partition("=")
        rows.append(Row(label or Path(path).name, f"--policy {path}", _policy_options(path)))
    return rows


@dataclass(frozen=True)
class Tuned:
    """One `imcc tune --json` document, with its policy written out as a file."""

    source: Path
    doc: dict[str, Any]
    row: Row
    cpu_s: float | None = None   # user + sys of the tuner's processes, when measured


def _cpu_seconds(path: str) -> float:
    """user + sys from a `/usr/bin/time -f "%e s wall %U s user %S s sys"` file."""
    words = Path(path).read_text().split()
    return float(words[words.index("user") - 2]) + float(words[words.index("sys") - 2])


def tuned_inputs(specs: list[str], tmp: Path) -> list[Tuned]:
    res = []
    for i, spec in enumerate(specs):
        p, _, timing = spec.partition(",")
        doc = json.loads(Path(p).read_text())
        pol = tmp / f"tuned{i}.json"
        pol.write_text(json.dumps(doc["policy"]))
        label = f"tuned {doc['target']} --max-drop {doc['max_drop']:g}"
        res.append(Tuned(Path(p), doc, Row(label, f"--target {doc['target']} --policy FILE",
                                           _policy_options(pol, doc["target"])),
                         _cpu_seconds(timing) if timing else None))
    return res


def dominance_rows(target: str) -> list[Row]:
    t = CrossbarTarget(*CrossbarTarget.parse_shape(target))
    rows = [Row(f"{target} W4A4 {FL}-bit first/last", f"--target {target} --first-last-bits "
                f"{FL}", {"target": t, "first_last_bits": FL})]
    for g in GROUPS:
        for r in RANKS:
            rows.append(Row(f"{target} {r} g{g} data", f"--target {target} --first-last-bits "
                            f"{FL} --rank {r} --groups {g}",
                            {"target": t, "first_last_bits": FL,
                             "lowrank": LowRankPass(rank=r, groups=g, method="data")}))
    return rows


def tuned_section(tuned: list[tuple[Tuned, Result]], grids: dict[str, list[Result]]) -> str:
    """The "Tuned per-layer policies" section: the tuner's runs and the dominance check."""
    out = ["""## Tuned per-layer policies

Each row is one run of
`imcc tune resnet20 --calib cifar10 --calib-limit 250 --target T --max-drop D --jobs 2`.
The tuner only reads images 0-249. It verifies every candidate policy by real compiles
with 2-fold cross-fitting: it calibrates on images 0-124 and scores 125-249, then the other
way round, so all 250 images are held-out scores. "tuner drop" is what the tuner verified
for the policy it emitted. "tuner wall" is its own wall time with 2 worker processes on
the shared 2-core machine, where other jobs ran beside it (load average up to 11). "tuner
CPU" is the user + system time of all its processes (`/usr/bin/time`), which bounds the
wall time on 2 idle cores from above. After that, the policy is compiled
as `imcc compile --target T --policy FILE --calib cifar10 --calib-limit 250` and
simulated on images 250-499, which the tuner never saw. Those are the "top-1" and
"vs float" columns, measured like the rows above.
"""]
    if not tuned:
        out.append("_None in this run: `python scripts/accuracy_table.py --tuned T.json` adds "
                   "them (T.json: what `imcc tune ... --json` printed)._")
        return "\n".join(out)
    out.append("| target | --max-drop | tuner drop (points) | tuner wall (s) | tuner CPU (s) "
               "| verifications | cycles | uncompressed cycles | speedup | 8-bit layers "
               "| factorized layers | top-1 (250-499) | vs float (points) | = onnxruntime |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---:|---:|")
    for t, r in tuned:
        d = t.doc
        fact = [f"{la['name']} {la['setting']}" for la in d["layers"] if la["setting"] != "none"]
        out.append(f"| {d['target']} | {d['max_drop']:g} | {d['drop']:.2f} | "
                   f"{d['seconds']:.0f} | {'-' if t.cpu_s is None else f'{t.cpu_s:.0f}'} | "
                   f"{len(d['verifications'])} | {r.cycles:,} | "
                   f"{d['baseline_cycles']:,} | {d['baseline_cycles'] / r.cycles:.2f}x | "
                   f"{', '.join(d['eight_bit']) or '-'} | {'; '.join(fact) or '-'} | "
                   f"{r.top1:.1%} | {(r.top1 - r.float_top1) * 100:+.1f} | "
                   f"{r.agreement:.0%} |")
        assert r.cycles == d["total_cycles"], "the compiled cycles are the tuner's"
    for target, grid in grids.items():
        pols = [(t, r) for t, r in tuned if t.doc["target"] == target]
        out.append(f"""
### Dominance check at {target}

The uniform configurations (W4A4, {FL}-bit first/last, data-aware fit), compiled at
{target} with the same calibration and simulated on the same images 250-499. A row
*dominates* a tuned policy when it has both fewer cycles and a higher top-1.
""")
        heads = " | ".join(f"dominates {t.row.label}" for t, _ in pols)
        out.append(f"| configuration | cycles ({target}) | top-1 (250-499) | {heads} |")
        out.append("|---|---:|---:|" + "---|" * len(pols))
        for g in grid:
            marks = " | ".join("**yes**" if g.cycles < r.cycles and g.top1 > r.top1 else "no"
                               for _, r in pols)
            out.append(f"| `{g.row.flags}` | {g.cycles:,} | {g.top1:.1%} | {marks} |")
        for t, r in pols:
            dom = [g for g in grid if g.cycles < r.cycles and g.top1 > r.top1]
            out.append(f"\n{t.row.label} ({r.cycles:,} cycles, {r.top1:.1%}): "
                       + ("dominated by " + ", ".join(f"`{g.row.flags}`" for g in dom)
                          if dom else "not dominated by any uniform configuration."))
    return "\n".join(out)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def measure(row: Row, calib: Dataset, ev: Dataset, tmp: Path) -> Result:
    t0 = time.perf_counter()
    opts = CompileOptions(calib=calib.x if row.calib else None, **row.options)
    res = compile_model("resnet20", opts)
    out = write_outputs(res, tmp / f"r{abs(hash(row.label))}")
    t1 = time.perf_counter()
    m, _ = evaluate(out, ev)
    t2 = time.perf_counter()
    if not m["matches_onnxruntime"]:
        raise SystemExit(f"{row.label}: the program differs from onnxruntime")
    rep = Report.from_json(res.report)
    halves = [la for la in rep.layers if la.role == "R"]
    return Result(row, m["compiled_top1"], m["float_top1"], m["ort_agreement"],
                  m["max_abs_diff"], rep.total_cycles, rep.headline_speedup,
                  _mean([la.rel_error for la in halves if la.rel_error is not None]),
                  _mean([la.data_error for la in halves if la.data_error is not None]),
                  t1 - t0, t2 - t1)


def _num(v: float | None, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _line(r: Result, first: str) -> str:
    drop = (r.top1 - r.float_top1) * 100
    return (f"| {first} | {r.top1:.1%} | {drop:+.1f} | {r.agreement:.0%} | "
            f"{r.max_diff:.2g} | {r.cycles:,} | "
            f"{'-' if r.speedup is None else f'{r.speedup:.2f}x'} | "
            f"{_num(r.rel_error)} | {_num(r.data_error)} | {r.compile_s:.0f} | "
            f"{r.simulate_s:.0f} |")


HEAD = ("| top-1 | vs float (points) | = onnxruntime | max diff | cycles (128x128) | "
        "speedup vs im2col | mean weight err | mean data err | compile (s) | "
        "simulate (s) |")
SEP = "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"


def render(base: list[Result], grid: list[Result], policies: list[Result],
           load: tuple[float, float] = (0.0, 0.0), tuned: str = "") -> str:
    float_top1 = base[0].float_top1 if base else (grid or policies)[0].float_top1
    out = [f"""# Accuracy of the compiled ResNet-20 (measured)

Generated by `python scripts/accuracy_table.py` (do not edit by hand).

The bundled pretrained CIFAR-10 ResNet-20 and the bundled 500 CIFAR-10 test images
(`imcc/examples/cifar10_test_500.npz`) are used. The calibration data (activation scales,
GPTQ weights, the data-aware low-rank fit) are images 0-{CALIB_IMAGES - 1}; every row is
evaluated on images {CALIB_IMAGES}-499 ({500 - CALIB_IMAGES} images: one image is \
{100 / (500 - CALIB_IMAGES):.1f} points).
Target 128x128, mapping `auto`, 8-bit ADC (lossless here). "top-1" is the functional
simulation of the emitted crossbar program (`imcc simulate`); "= onnxruntime" is the
fraction of images whose argmax equals onnxruntime's on `compiled.onnx` and "max diff" the
largest logit difference (the program must agree on every image; the script stops
otherwise). The float model scores {float_top1:.1%} on these images. "speedup vs im2col"
divides the im2col cycles of the uncompressed network by the row's cycles. "mean weight
err" is the mean over factorized pairs of `||W - W_hat||_F / ||W||_F`, "mean data err" of
the data-weighted output error `||Y - Y_hat||_F / ||Y||_F` on the calibration patches (see
`docs/reports.md`). Wall times (seconds) are one process with one BLAS thread on a shared
2-core machine (1-minute load average {load[0]:.1f} at the start, {load[1]:.1f} at the end;
other jobs ran beside it, so compare times only within a similar load).

## Baselines

| configuration | flags {HEAD}
|---|---{SEP}"""]
    out += [_line(r, f"{r.row.label} | `{r.row.flags or '(defaults)'}`") for r in base]
    if grid:
        out.append(f"""
## Group low-rank at W4A4, {FL}-bit first/last layers: SVD vs data-aware

Every row: `imcc compile resnet20 --calib ... --first-last-bits {FL} --rank R --groups G
--lowrank-method M`.
`data` (the default with `--calib`) fits each factorized layer to the float network's
outputs on the calibration images, fed by the already factorized network (reduced-rank
regression per input-channel group, bias correction, intermediate channels equalized);
`svd` is the per-group truncated SVD of the weights.
Both then quantize with GPTQ and refit each pair's `L` half to its float outputs.

How to read it: the data-aware fit is far ahead of the SVD at every setting, and `m/2`
with `g = 4` or `8` stays within a few points of float, but lower ranks still cost many
points without fine-tuning. Ranks are per group (`k = m/r` for each of the `g` groups), so
at one rank more groups keep more parameters and cycles (compare the cycle column).
The weight error of a data fit can exceed 1: the fit only matches the layer in the
directions the calibration inputs excite, which is the point; the data error is the one
that tracks accuracy.

| rank | groups | method {HEAD}
|---|---:|---{SEP}""")
        out += [_line(r, r.row.label) for r in grid]
    out.append("\n" + (tuned or tuned_section([], {})))
    if policies:
        out.append(f"""
### Policy files

Rows of `--policy FILE`, compiled with `--policy FILE` (its first/last bits, else
{FL}) and measured like the rows above.

| policy | flags {HEAD}
|---|---{SEP}""")
        out += [_line(r, f"{r.row.label} | `{r.row.flags}`") for r in policies]
    out.append(f"""
## Reproducing one row

```bash
imcc compile resnet20 --calib imcc/examples/cifar10_test_500.npz --calib-limit {CALIB_IMAGES} \\
    --first-last-bits {FL} --rank m/2 --groups 4 -o g4m2
imcc simulate g4m2 --skip {CALIB_IMAGES} --json      # the bundled sample, images {CALIB_IMAGES}-499
```

Without `--calib` the pipeline is the one without data: activation scales on a synthetic
batch, round-to-nearest weights and the plain per-group SVD (the report says
`method svd`, `calibration synthetic`); the row marked "no calibration data" above
measures it.

The simulator and onnxruntime agree bit for bit. `compiled.onnx` runs each crossbar layer
on integer levels, then `Mul(scale)` and `Add(bias)`, the crossbar's own arithmetic, and
`imcc simulate` runs onnxruntime with graph optimizations off (onnxruntime's ConvMulFusion
would otherwise fold the scale into non-integer weights, and its QDQ transformers would
re-quantize the weights, so 4-bit activations could round the other way at a tie).
""")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-grid", action="store_true", help="skip the rank x groups grid")
    ap.add_argument("--policy", action="append", default=[], metavar="FILE[=LABEL]",
                    help="also measure a low-rank policy file (repeatable)")
    ap.add_argument("--tuned", action="append", default=[], metavar="JSON[,TIME]",
                    help="what `imcc tune --json` printed (repeatable): its policy is "
                         "measured and checked against the uniform grid at its target; "
                         "TIME: the tuner's `/usr/bin/time -f '%%e s wall %%U s user %%S s "
                         "sys'` output")
    ap.add_argument("--tuned-only", action="store_true",
                    help="measure only the tuned policies and their dominance grids, and "
                         "replace that section of the existing output file")
    ap.add_argument("--dominance", action="append", default=None, metavar="TARGET",
                    help="targets at which the tuned policies are checked against the uniform "
                         "grid (repeatable; default 32x32)")
    ap.add_argument("--cache", type=Path, metavar="DIR",
                    help="keep each measured row in DIR and reuse it on the next run")
    ap.add_argument("--reverse", action="store_true",
                    help="measure the grid rows last to first (a second process sharing "
                         "--cache then meets the first halfway)")
    ap.add_argument("-o", "--output", type=Path,
                    default=Path(__file__).resolve().parent.parent / "docs" / "accuracy.md",
                    help="Markdown file to write (default docs/accuracy.md)")
    args = ap.parse_args(argv)
    data = load_npz(bundled_example_data(), "input", (None, 3, 32, 32))
    calib, ev = data.split(CALIB_IMAGES)
    sections: list[list[Result]] = [[], [], []]
    only = args.tuned_only
    plan = [(0, [] if only else baseline_rows()),
            (1, [] if args.no_grid or only else grid_rows()),
            (2, [] if only else policy_rows(args.policy))]
    load0 = os.getloadavg()[0]

    def run(row: Row, tmp: str) -> Result:
        key = None
        if args.cache is not None:
            # a measured row is reused by its label and flags (and, for a policy, its content)
            pol = row.options.get("lowrank")
            ident = json.dumps([row.label, row.flags, repr(pol), row.options.get("layer_bits"),
                                repr(row.options.get("target"))])
            key = args.cache / f"{hashlib.sha256(ident.encode()).hexdigest()[:16]}.json"
            if key.is_file():
                vals = json.loads(key.read_text())
                print(f"{row.label}: cached", file=sys.stderr, flush=True)
                return Result(row, **vals)
        r = measure(row, calib, ev, Path(tmp))
        if key is not None:
            vals = {f.name: getattr(r, f.name) for f in dataclasses.fields(r) if f.name != "row"}
            key.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(key, json.dumps(vals).encode())
        print(f"{row.label}: top-1 {r.top1:.1%}, {r.cycles:,} cycles ({r.compile_s:.0f}s + "
              f"{r.simulate_s:.0f}s)", file=sys.stderr, flush=True)
        return r

    with tempfile.TemporaryDirectory() as tmp:
        for i, rows in plan:
            sections[i] += [run(row, tmp) for row in rows]
        tuned = [(t, run(t.row, tmp)) for t in tuned_inputs(args.tuned, Path(tmp))]
        targets = sorted({t.doc["target"] for t, _ in tuned}
                         & set(args.dominance or ["32x32"]))
        order = (lambda rows: rows[::-1]) if args.reverse else (lambda rows: rows)
        grids = {tg: order([run(row, tmp) for row in order(dominance_rows(tg))])
                 for tg in targets}
    section = tuned_section(tuned, grids)
    if only:
        text = args.output.read_text()
        start = text.index("## Tuned per-layer policies")
        end = text.index("## Reproducing one row")
        atomic_write_bytes(args.output, (text[:start] + section + "\n\n" + text[end:]).encode())
    else:
        atomic_write_bytes(args.output, render(*sections, load=(load0, os.getloadavg()[0]),
                                               tuned=section).encode())
    print(f"wrote {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
