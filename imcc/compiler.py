"""The compile driver: model -> IR -> passes -> program -> report, written atomically.

OUTDIR layout (all deterministic):
  report.json     the `imcc-report/1` summary (cycles, tiles, utilization, energy, ...)
  compiled.onnx   the network exactly as mapped (factorized, QDQ-quantized) for onnxruntime
  float.onnx      the imported float model, the reference for accuracy comparisons
  program.json    the crossbar program (`imcc-program/1`, docs/program-format.md)
  arrays.npz      its row/column maps and cell levels
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from imcc.analysis.energy import analyze_energy
from imcc.analysis.tech import load_tech
from imcc.fileio import atomic_dir
from imcc.frontend import import_model
from imcc.ir import Graph, verify
from imcc.ir.onnx_export import serialize
from imcc.ir.records import LowRankDecision, LowRankRecord
from imcc.passes.base import Pass
from imcc.passes.fold_bn import FoldBatchNorm
from imcc.passes.lowrank import LowRankPass
from imcc.passes.map import MapPass
from imcc.passes.quantize import QuantizePass
from imcc.report.build import build_report
from imcc.targets.crossbar import CrossbarTarget
from imcc.targets.emit import emit_program
from imcc.targets.program import Program
from imcc.targets.program_io import write_program

BUNDLED = {"resnet20": "resnet20.onnx"}


def resolve_model(spec: str) -> Path:
    """A path, or the name of a bundled example (`resnet20`)."""
    p = Path(spec)
    if spec in BUNDLED and not p.exists():
        return Path(str(resources.files("imcc.examples") / BUNDLED[spec]))
    return p


@dataclass
class CompileOptions:
    target: CrossbarTarget = field(default_factory=CrossbarTarget)
    mapping: str = "auto"
    quantize: bool = True
    first_last_bits: int | None = None
    calib: np.ndarray | None = None
    lowrank: LowRankPass = field(default_factory=LowRankPass)
    tech: str = "isaac"
    # An explicit pass list (`-p`); None runs `default_pipeline`.
    pipeline: list[Pass] | None = None
    verify_each: bool = False  # run the IR verifier after every pass (tests, --debug)


@dataclass
class CompileResult:
    graph: Graph
    float_graph_bytes: bytes
    program: Program
    report: dict[str, Any]  # report["passes"] names the passes run


def default_pipeline(opts: CompileOptions) -> list[Pass]:
    """fold-bn, then lowrank (if a rank is set), quantize (unless --no-quantize), map."""
    pipeline: list[Pass] = [FoldBatchNorm()]
    if lowrank_active(opts.lowrank):
        pipeline.append(opts.lowrank)
    if opts.quantize:
        pipeline.append(QuantizePass(weight_bits=opts.target.weight_bits,
                                     act_bits=opts.target.act_bits,
                                     first_last_bits=opts.first_last_bits, calib=opts.calib))
    pipeline.append(MapPass(target=opts.target, strategy=opts.mapping))
    return pipeline


def compile_graph(graph: Graph, opts: CompileOptions, model_name: str,
                  progress: Callable[[str], None] | None = None) -> CompileResult:
    float_bytes = serialize(graph)
    pipeline = opts.pipeline if opts.pipeline is not None else default_pipeline(opts)
    for p in pipeline:
        if isinstance(p, QuantizePass) and p.calib is None:
            p.calib = opts.calib
    for p in pipeline:
        if progress:
            progress(p.name)
        graph = p.run(graph)
        if opts.verify_each:
            verify(graph)
    if progress:
        progress("emit")
    quant = next((p for p in pipeline if isinstance(p, QuantizePass)), None)
    lowrank = next((p for p in pipeline if isinstance(p, LowRankPass) and lowrank_active(p)),
                   None)
    mapper = next(p for p in pipeline if isinstance(p, MapPass))
    program = emit_program(graph, opts.target, model_name)
    energy = analyze_energy(program, opts.target, load_tech(opts.tech))
    report = build_report(program, opts.target, energy, mapping=mapper.strategy,
                          tech=opts.tech,
                          calibration=None if quant is None else quant.calibration,
                          lowrank=None if lowrank is None else lowrank_record(lowrank),
                          passes=[p.name for p in pipeline]).to_json()
    return CompileResult(graph, float_bytes, program, report)


def compile_model(model: str, opts: CompileOptions,
                  progress: Callable[[str], None] | None = None) -> CompileResult:
    path = resolve_model(model)
    graph = import_model(path, name=path.stem)
    return compile_graph(graph, opts, path.stem, progress)


def write_outputs(res: CompileResult, outdir: str | Path) -> Path:
    """Write every output into a temporary directory, then move it into place."""
    dest = Path(outdir)
    with atomic_dir(dest) as tmp:
        (tmp / "report.json").write_text(json.dumps(res.report, indent=1) + "\n")
        (tmp / "compiled.onnx").write_bytes(serialize(res.graph))
        (tmp / "float.onnx").write_bytes(res.float_graph_bytes)
        write_program(res.program, tmp)
    return dest


def default_outdir(model: str) -> Path:
    return Path.cwd() / f"{resolve_model(model).stem}.imcc"


def lowrank_active(p: LowRankPass) -> bool:
    return p.rank != "none" or any(r != "none" for r in p.layer_ranks.values())


def lowrank_record(p: LowRankPass) -> LowRankRecord:
    """What the report reads about a lowrank pass run (its decisions carry the same fields)."""
    return LowRankRecord(p.rank, p.groups, tuple(LowRankDecision(**asdict(d))
                                                 for d in p.decisions))
