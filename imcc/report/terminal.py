"""Rich terminal tables for reports, simulations and sweeps."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def time_text(ns: float | None) -> str:
    if ns is None:
        return "-"
    for scale, unit in ((1e9, "s"), (1e6, "ms"), (1e3, "us")):
        if ns >= scale:
            return f"{ns / scale:.2f} {unit}"
    return f"{ns:.1f} ns"


def short_name(name: str) -> str:
    """'/layer1/layer1.0/conv1/Conv' -> 'layer1.0/conv1': exporters repeat scopes and op."""
    parts = [p for p in name.strip("/").split("/") if p]
    if len(parts) > 1 and parts[-1] in ("Conv", "Gemm", "MatMul"):
        parts = parts[:-1]
    if len(parts) > 1 and parts[1].startswith(parts[0] + "."):
        parts = parts[1:]
    return "/".join(parts) or name


def energy_text(pj: float | None) -> str:
    if pj is None:
        return "-"
    for scale, unit in ((1e6, "uJ"), (1e3, "nJ")):
        if pj >= scale:
            return f"{pj / scale:.2f} {unit}"
    return f"{pj:.1f} pJ"


def report_table(report: dict[str, Any]) -> Table:
    t = report["target"]
    lowrank = any(layer.get("rank") is not None for layer in report["layers"])
    energy = "total_energy_pj" in report
    title = (f"{report['model']} on {t['rows']}x{t['cols']} arrays, W{t['weight_bits']}"
             f"/cell {t['cell_bits']} bit, "
             f"{'A' + str(t['act_bits']) if report['quantized'] else 'float (--no-quantize)'}, "
             f"mapping {report['mapping']}")
    table = Table(title=title, show_footer=True, header_style="bold")
    table.add_column("layer", footer="total")
    table.add_column("op / shape")
    table.add_column("mapping")
    table.add_column("tiles (r x c)", justify="right", footer=str(report["n_arrays"]))
    table.add_column("windows", justify="right")
    table.add_column("cycles", justify="right", footer=f"{report['total_cycles']:,}")
    table.add_column("im2col", justify="right", footer=f"{report['im2col_cycles']:,}")
    table.add_column("util", justify="right")
    if lowrank:
        table.add_column("rank/g", justify="right")
        table.add_column("rel err", justify="right")
    if energy:
        table.add_column("energy", justify="right",
                         footer=energy_text(report["total_energy_pj"]))
    for layer in report["layers"]:
        m = layer["mapping"] + (f" {layer['pw'][0]}x{layer['pw'][1]}" if layer["pw"] else "")
        if layer.get("group_pack", 1) > 1:
            m += f" {layer['group_pack']}g/array"
        row = [short_name(layer["name"]), f"{layer['op']} {layer['shape']}", m,
               f"{layer['tiles']} ({layer['row_tiles']}x{layer['col_tiles']})",
               f"{layer['windows']:,}", f"{layer['cycles']:,}", f"{layer['im2col_cycles']:,}",
               f"{layer['utilization']:.0%}"]
        if lowrank:
            row.append(f"{layer['rank']}/{layer['groups']}" if layer["rank"] else "-")
            row.append(f"{layer['rel_error']:.3f}" if layer.get("rel_error") is not None
                       else "-")
        if energy:
            row.append(energy_text(layer.get("energy_pj")))
        table.add_row(*row)
    return table


def summary_lines(report: dict[str, Any]) -> list[str]:
    lines = [f"total: {report['total_cycles']:,} cycles on {report['n_arrays']} arrays; "
             f"im2col baseline {report['im2col_cycles']:,} "
             f"(speedup {report['speedup']:.2f}x)"]
    if "total_energy_pj" in report:
        lines.append(f"energy {energy_text(report['total_energy_pj'])}, latency "
                     f"{time_text(report['total_latency_ns'])} per image "
                     f"(tech {report['target'].get('tech')}, ADC {report.get('adc_bits')} bit)")
    if report.get("calibration"):
        lines.append(f"activation calibration: {report['calibration']}")
    lr = report.get("lowrank")
    if lr:
        lines.append(f"low-rank: rank {lr['rank']}, groups {lr['groups']}, "
                     f"{lr['factorized_layers']} layers factorized; left as is: "
                     + (", ".join(f"{k} ({v})" for k, v in lr["skipped"].items()) or "none"))
    return lines


def print_report(report: dict[str, Any], console: Console) -> None:
    console.print(report_table(report))
    for line in summary_lines(report):
        console.print(line)


def sim_table(result: dict[str, Any]) -> Table:
    table = Table(title="functional simulation", header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, val in result.items():
        if isinstance(val, float):
            text = f"{val:.4%}" if key.endswith(("top1", "agreement")) else f"{val:.3g}"
        else:
            text = str(val)
        table.add_row(key, text)
    return table
