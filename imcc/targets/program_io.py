"""On-disk program format `imcc-program/3` (see docs/program-format.md):
`program.json` (structure, maps' shapes, post-processing, and with `--chip` the placement)
+ `arrays.npz` (per crossbar layer: its tiles' row maps, column maps and cell levels, one
member each, and its scales and biases; constants of digital steps). `imcc-program/2`
files (three members per tile) and `/1` files (no placement either) are still read."""

from __future__ import annotations

import json
import zipfile
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imcc.errors import DataError
from imcc.fileio import Stacked, parse_json
from imcc.ir import LowRank, MappingChoice, PairRole, Strategy
from imcc.ir import ops as O
from imcc.targets.program import (
    FORMAT,
    READABLE_FORMATS,
    CrossbarLayer,
    DigitalStep,
    LayerPlace,
    Load,
    Placement,
    Program,
    Replica,
    SegmentPlace,
    Tile,
)
from imcc.targets.program_check import check_program

_DIGITAL_OPS: dict[str, type[O.Op]] = {
    cls.kind: cls for cls in (O.Relu, O.LeakyRelu, O.Sigmoid, O.Tanh, O.Clip, O.Softmax,
                              O.Affine, O.FakeQuant, O.Add, O.Sub, O.Mul, O.Div, O.MaxPool,
                              O.AveragePool, O.GlobalAveragePool, O.GlobalMaxPool, O.Pad,
                              O.Slice, O.Concat, O.Reshape, O.Transpose, O.HardSigmoid,
                              O.HardSwish, O.Erf, O.Gelu, O.Sqrt, O.Reciprocal, O.LayerNorm,
                              O.ReduceMean, O.ReduceSum, O.ReduceMax, O.Pow, O.Where, O.Expand,
                              O.Gather, O.MatMul)}


def _op_attrs(op: O.Op) -> dict[str, Any]:
    return {f.name: (list(v) if isinstance(v := getattr(op, f.name), tuple) else v)
            for f in fields(op)} if is_dataclass(op) else {}


def _op_from(kind: str, attrs: dict[str, Any]) -> O.Op:
    cls = _DIGITAL_OPS[kind]
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in attrs.items()})


def _dtype(parts: list[np.ndarray], empty: Any) -> np.dtype[Any]:
    return np.result_type(*parts) if parts else np.dtype(empty)


def program_to_files(p: Program) -> tuple[dict[str, Any], dict[str, np.ndarray | Stacked]]:
    arrays: dict[str, np.ndarray | Stacked] = {}
    steps: list[dict[str, Any]] = []
    for si, s in enumerate(p.steps):
        key = f"s{si:03d}"
        if isinstance(s, DigitalStep):
            for ci, (_, arr) in enumerate(sorted(s.consts.items())):
                arrays[f"{key}.const{ci}"] = arr
            steps.append({"kind": "digital", "name": s.name, "op": s.op.kind,
                          "attrs": _op_attrs(s.op), "inputs": s.inputs, "outputs": s.outputs,
                          "consts": {name: f"{key}.const{ci}" for ci, (name, _) in
                                     enumerate(sorted(s.consts.items()))}})
            continue
        # One member per part for the whole layer (the tiles' maps and cells back to back,
        # in tile order): a member per tile made VGG-11's arrays.npz 97,408 zip entries.
        arrays[f"{key}.rows"] = Stacked.of([t.rows for t in s.tiles], _dtype(
            [t.rows for t in s.tiles], np.int32), (3,))
        arrays[f"{key}.cols"] = Stacked.of([t.cols for t in s.tiles], _dtype(
            [t.cols for t in s.tiles], np.int32), (4,))
        arrays[f"{key}.cells"] = Stacked.of([t.cells.reshape(-1) for t in s.tiles], _dtype(
            [t.cells for t in s.tiles], np.int8))
        tiles = [{"array": t.array, "group": t.group, "row_tile": t.row_tile,
                  "col_tile": t.col_tile, "rows_used": int(t.rows.shape[0]),
                  "cols_used": int(t.cols.shape[0]), "taps": t.taps} for t in s.tiles]
        arrays[f"{key}.out_scale"] = s.out_scale
        if s.bias is not None:
            arrays[f"{key}.bias"] = s.bias
        lr = s.lowrank
        steps.append({
            "kind": "crossbar", "name": s.name, "op": s.op, "input": s.input, "output": s.output,
            "arrays_key": key,
            "in_shape": list(s.in_shape), "out_shape": list(s.out_shape),
            "kernel": list(s.kernel), "stride": list(s.stride), "dilation": list(s.dilation),
            "pads": list(s.pads), "groups": s.groups,
            "mapping": {"strategy": s.mapping.strategy.value, "pw": list(s.mapping.pw),
                        "reason": s.mapping.reason, "group_pack": s.mapping.group_pack,
                        **({"pieces": s.mapping.pieces} if s.mapping.pieces else {}),
                        **({"strip": s.mapping.strip} if s.mapping.strip else {}),
                        **({"patch": list(s.mapping.patch)}
                           if s.mapping.patch != (0, 0) else {}),
                        **({"bicliques": s.mapping.bicliques} if s.mapping.bicliques else {}),
                        **({"segments": s.mapping.segments} if s.mapping.segments else {})},
            "window_loop": {"windows": list(s.windows),
                            "origin_step": [s.mapping.pw[0] * s.stride[0],
                                            s.mapping.pw[1] * s.stride[1]]},
            "post": {"slice_weights": s.slice_weights, "out_scale": f"{key}.out_scale",
                     "bias": f"{key}.bias" if s.bias is not None else None},
            "in_quant": None if s.in_quant is None else
            {"scale": s.in_quant[0], "bits": s.in_quant[1], "signed": s.in_quant[2]},
            "lowrank": None if lr is None else {**asdict(lr), "role": lr.role.value},
            "weight_params": s.weight_params, "cycles": s.cycles,
            "lower_bound_cycles": s.lower_bound_cycles, "tiles": tiles})
    doc = {"format": FORMAT, "model": p.model, "target": p.target, "quantized": p.quantized,
           "inputs": [{"name": n, "shape": list(shp)} for n, shp in p.inputs],
           "outputs": p.outputs, "n_arrays": p.n_arrays, "total_cycles": p.total_cycles,
           "steps": steps, "placement": _placement_doc(p)}
    return doc, arrays


def _placement_doc(p: Program) -> dict[str, Any] | None:
    """The placement section; loads name layers by their index among the crossbar layers."""
    pl = p.placement
    if pl is None:
        return None
    index = {la.name: k for k, la in enumerate(p.crossbar_layers())}
    return {"chip": pl.chip, "arrays": pl.arrays, "batch": pl.batch,
            "segments": [{"index": s.index, "layers": list(s.layers),
                          "loads": [[ld.array, index[ld.layer], ld.tile] for ld in s.loads]}
                         for s in pl.segments],
            "layers": [{"layer": lp.layer, "segment": lp.segment,
                        "replicas": [{"arrays": list(r.arrays), "windows": [r.start, r.stop]}
                                     for r in lp.replicas]} for lp in pl.layers]}


def _placement_from(raw: Any, layers: list[CrossbarLayer]) -> Placement | None:
    if raw is None:
        return None
    names = [la.name for la in layers]

    def layer_name(k: Any) -> str:
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < len(names):
            raise ValueError(f"load names crossbar layer {k!r}, not in [0, {len(names)})")
        return names[k]

    return Placement(
        chip=raw["chip"], arrays=raw["arrays"], batch=raw["batch"],
        segments=tuple(SegmentPlace(s["index"], tuple(s["layers"]),
                                    tuple(Load(a, layer_name(k), t) for a, k, t in s["loads"]))
                       for s in raw["segments"]),
        layers=tuple(LayerPlace(lp["layer"], lp["segment"], tuple(
            Replica(tuple(r["arrays"]), r["windows"][0], r["windows"][1])
            for r in lp["replicas"])) for lp in raw["layers"]))


def program_json(doc: dict[str, Any]) -> str:
    """program.json's text: one top-level key per line and one step per line. Each line is
    encoded by json's C encoder (an `indent` makes json fall back to its pure-Python
    encoder: 1 s for ResNet-50's 6,260 tile entries)."""
    lines = []
    for key, value in doc.items():
        if key == "steps":
            body = ",\n".join(f"  {json.dumps(step)}" for step in value)
            lines.append(f' "steps": [\n{body}\n ]' if value else ' "steps": []')
        else:
            lines.append(f" {json.dumps(key)}: {json.dumps(value)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def write_program(p: Program, outdir: Path) -> None:
    from imcc.fileio import write_npz

    doc, arrays = program_to_files(p)
    (outdir / "program.json").write_text(program_json(doc))
    write_npz(outdir / "arrays.npz", arrays)


def read_program(outdir: str | Path) -> Program:
    d = Path(outdir)
    try:
        doc = parse_json((d / "program.json").read_text(), f"{d}/program.json")
        arrays = dict(np.load(d / "arrays.npz", allow_pickle=False))
    except FileNotFoundError as exc:
        raise DataError(f"{d}: not a compiled imcc output (missing {Path(exc.filename).name})",
                        hint="run `imcc compile MODEL -o DIR` first") from exc
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise DataError(f"{d}: program files are corrupt ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") not in READABLE_FORMATS:
        got = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise DataError(f"{d}: program format {got!r}, expected "
                        f"{' or '.join(map(repr, READABLE_FORMATS))}")
    try:
        program = _program_from(doc, arrays)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        # A tampered or truncated document: name the missing/bad entry, never a traceback.
        raise DataError(f"{d}/program.json: malformed program ({type(exc).__name__}: {exc})",
                        hint="recompile with `imcc compile`") from exc
    try:
        check_program(program)
    except DataError as exc:
        raise DataError(f"{d}: invalid program: {exc.message}",
                        hint="recompile with `imcc compile`") from None
    return program


def _tiles_v2(raw: list[dict[str, Any]], arrays: dict[str, np.ndarray]) -> list[Tile]:
    """Tiles of an `imcc-program/1` or `/2` file: three members per tile."""
    return [Tile(t["array"], t["group"], t["row_tile"], t["col_tile"],
                 arrays[t["arrays_key"] + ".rows"], arrays[t["arrays_key"] + ".cols"],
                 arrays[t["arrays_key"] + ".cells"], t["taps"]) for t in raw]


def _tiles(raw: list[dict[str, Any]], arrays: dict[str, np.ndarray], key: str) -> list[Tile]:
    """Tiles of an `imcc-program/3` layer: views into its `key.rows`, `key.cols` (stacked
    along axis 0) and `key.cells` (each tile's rows_used x cols_used block, row-major,
    back to back), cut at the tiles' `rows_used` and `cols_used`."""
    rows, cols, cells = (arrays[f"{key}.{part}"] for part in ("rows", "cols", "cells"))
    r_used = [t["rows_used"] for t in raw]
    c_used = [t["cols_used"] for t in raw]
    for name, used in (("rows_used", r_used), ("cols_used", c_used)):
        if not all(isinstance(u, int) and not isinstance(u, bool) and u >= 0 for u in used):
            raise ValueError(f"{key}: {name} must be non-negative integers")
    need = sum(r * c for r, c in zip(r_used, c_used, strict=True))
    if cells.ndim != 1 or cells.size != need:
        raise ValueError(f"{key}.cells holds {cells.size} levels in shape {cells.shape}; its "
                         f"tiles' rows_used x cols_used need {need} in one axis")
    for name, a, used in (("rows", rows, r_used), ("cols", cols, c_used)):
        if a.ndim < 1 or a.shape[0] != sum(used):
            raise ValueError(f"{key}.{name} has {a.shape[0] if a.ndim else 0} entries, its "
                             f"tiles' {name}_used add up to {sum(used)}")
    r_at = np.cumsum([0] + r_used)
    c_at = np.cumsum([0] + c_used)
    k_at = np.cumsum([0] + [r * c for r, c in zip(r_used, c_used, strict=True)])
    return [Tile(t["array"], t["group"], t["row_tile"], t["col_tile"],
                 rows[r_at[i]:r_at[i + 1]], cols[c_at[i]:c_at[i + 1]],
                 cells[k_at[i]:k_at[i + 1]].reshape(r_used[i], c_used[i]), t["taps"])
            for i, t in enumerate(raw)]


def _program_from(doc: dict[str, Any], arrays: dict[str, np.ndarray]) -> Program:
    steps: list[CrossbarLayer | DigitalStep] = []
    for s in doc["steps"]:
        if s["kind"] == "digital":
            steps.append(DigitalStep(s["name"], _op_from(s["op"], s["attrs"]), s["inputs"],
                                     s["outputs"], {n: arrays[k] for n, k in s["consts"].items()}))
            continue
        tiles = (_tiles_v2(s["tiles"], arrays) if doc["format"] in READABLE_FORMATS[:2]
                 else _tiles(s["tiles"], arrays, s["arrays_key"]))
        m = s["mapping"]
        lr = s["lowrank"]
        post = s["post"]
        iq = s["in_quant"]
        steps.append(CrossbarLayer(
            name=s["name"], op=s["op"], input=s["input"], output=s["output"],
            in_shape=tuple(s["in_shape"]), out_shape=tuple(s["out_shape"]),
            kernel=tuple(s["kernel"]), stride=tuple(s["stride"]),
            dilation=tuple(s["dilation"]), pads=tuple(s["pads"]), groups=s["groups"],
            mapping=MappingChoice(Strategy(m["strategy"]), tuple(m["pw"]), m["reason"],
                                  int(m.get("group_pack", 1)),
                                  None if s.get("cycles") is None else int(s["cycles"]),
                                  pieces=m.get("pieces", 0), strip=m.get("strip", ""),
                                  patch=tuple(m.get("patch", (0, 0))),
                                  bicliques=m.get("bicliques", 0),
                                  segments=m.get("segments", "")),
            windows=tuple(s["window_loop"]["windows"]), tiles=tiles,
            slice_weights=post["slice_weights"], out_scale=arrays[post["out_scale"]],
            bias=arrays[post["bias"]] if post["bias"] else None,
            in_quant=None if iq is None else (iq["scale"], iq["bits"], iq["signed"]),
            lowrank=None if lr is None else LowRank(**{**lr, "role": PairRole(lr["role"])}),
            weight_params=s["weight_params"],
            lower_bound_cycles=int(s.get("lower_bound_cycles", 0))))
    placement = None
    if doc["format"] != READABLE_FORMATS[0]:
        placement = _placement_from(doc["placement"],
                                    [s for s in steps if isinstance(s, CrossbarLayer)])
    return Program(model=doc["model"], target=doc["target"], quantized=doc["quantized"],
                   inputs=[(i["name"], tuple(i["shape"])) for i in doc["inputs"]],
                   outputs=doc["outputs"], steps=steps, n_arrays=doc["n_arrays"],
                   placement=placement)
