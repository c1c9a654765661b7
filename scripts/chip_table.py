"""Generate docs/chip-level.md: chip-level figures (arrays, throughput, latency, energy per
inference, area, TOPS, TOPS/W, TOPS/mm2) of ResNet-20, VGG-8, ResNet-18 and VGG-16 on the
two chip presets, plus the settings closest to NeuroSim V1.4's published VGG-8 run.

Usage::

    python scripts/chip_table.py [--out docs/chip-level.md]

Every figure is read from the `chip` object of the report `imcc.compiler.finish` builds with
``chip=...`` (what `imcc compile MODEL --chip C` writes), never from a formula typed here.
ResNet-20 is the bundled pretrained network, quantized (W4A4, synthetic calibration, as
`imcc compile resnet20`). VGG-8, ResNet-18 and VGG-16 are built by `benchmarks/cnn.py` with
random weights and compiled without quantization (``quantize=False``): their layout, cycles,
energy and every chip figure depend only on the bit widths (`--weight-bits`, `--cell-bits`,
`--act-bits`), not on the weight values, which the script checks by compiling VGG-8 both
ways (calibrating VGG-16 on 224x224 inputs would take minutes for the same numbers).
Each network is mapped once per cell width; the chip variants of it reuse that mapping (as
`imcc sweep --chips` does). Takes about 3 minutes and 4 GB (VGG-16) on a 2-core machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from cnn import BUILDERS  # noqa: E402  (benchmarks/ is not a package)

from imcc.compiler import finish, options_from_flags, resolve_model, run_passes  # noqa: E402
from imcc.errors import UsageError  # noqa: E402
from imcc.frontend import import_model  # noqa: E402
from imcc.report.units import count_text, energy_text, sig_text, time_text  # noqa: E402
from imcc.targets.crossbar import CrossbarTarget  # noqa: E402

DEFAULT_OUT = ROOT / "docs" / "chip-level.md"


@dataclass(frozen=True)
class Variant:
    """One placement of a mapped network: `imcc compile ... --chip chip [--chip-arrays
    arrays] [--chip-batch batch] [--tech tech]`."""

    chip: str
    arrays: int | None = None
    batch: int | None = None
    tech: str = "isaac"
    adc_bits: int | None = None   # --adc-bits (energy only; the layout does not depend on it)
    note: str = ""


@dataclass(frozen=True)
class Net:
    label: str
    source: str           # "resnet20" (bundled) or a benchmarks/cnn.py builder name
    weight_bits: int
    act_bits: int
    quantize: bool


NETS = (
    Net("ResNet-20 (CIFAR-10, bundled)", "resnet20", 4, 4, True),
    Net("VGG-8 (CIFAR-10, NeuroSim's)", "vgg8", 8, 8, False),
    Net("ResNet-18 (ImageNet 224x224)", "resnet18", 4, 4, False),
    Net("VGG-16 (ImageNet 224x224)", "vgg16", 4, 4, False),
)
# Cells per preset: ISAAC at imcc's default 1-bit cells (what `imcc compile --chip isaac`
# runs), PIMCOMP-NN Arch-A at its 2-bit cells.
CELLS = {"isaac": 1, "pimcomp-arch-a": 2}
EXTRA: dict[str, list[tuple[int, Variant]]] = {
    # the segmented case of the issue: ResNet-20 on 40 ISAAC arrays, per image and batched
    "resnet20": [(1, Variant("isaac", 40, note="40 arrays")),
                 (1, Variant("isaac", 40, 64, note="40 arrays, batch 64"))],
    # VGG-16's fc1 alone needs 25,088 arrays at 1-bit cells: the smallest ISAAC-organised
    # chip that takes it (segmented)
    "vgg16": [(1, Variant("isaac", 25088, note="25,088 arrays")),
              (1, Variant("isaac", 25088, 64, note="25,088 arrays, batch 64"))],
}


def neurosim_variant(n_tiles: int) -> Variant:
    """NeuroSim's VGG-8 setting as far as imcc has it: all weights on chip once (a chip of
    exactly the network's arrays, so no replication), NeuroSim's 22 nm energies and its
    4-bit ADCs (`levelOutput` 16 in its run)."""
    return Variant("isaac", n_tiles, tech="neurosim", adc_bits=4,
                   note=f"{n_tiles:,} arrays, tech neurosim, 4-bit ADC")


def compile_variants(model: Path, net: Net, cell_bits: int, variants: list[Variant]
                     ) -> tuple[dict[str, Any], list[dict[str, Any] | str]]:
    """(the report without a chip, then per variant its chip object or the usage error
    that refused it), mapping the network once."""
    target = CrossbarTarget(128, 128, weight_bits=net.weight_bits, cell_bits=cell_bits,
                            act_bits=net.act_bits)
    opts = options_from_flags(target=target, quantize=net.quantize)
    graph = import_model(model, name=model.stem)
    graph, records = run_passes(graph, opts.passes(), opts.context())
    _, plain = finish(graph, opts.passes(), records, target, "isaac", model.stem)
    out: list[dict[str, Any] | str] = []
    for v in variants:
        chip = options_from_flags(target=target, quantize=net.quantize, chip=v.chip,
                                  chip_arrays=v.arrays, chip_batch=v.batch, tech=v.tech).chip
        tgt = target if v.adc_bits is None else dataclasses.replace(target,
                                                                     adc_bits=v.adc_bits)
        try:
            _, rep = finish(graph, opts.passes(), records, tgt, v.tech, model.stem,
                            chip=chip)
        except UsageError as exc:
            out.append(str(exc))
            continue
        # placement never changes the program's cycles
        assert rep["total_cycles"] == plain["total_cycles"]
        out.append(rep["chip"])
    return plain, out


HEADER = ("| network | W/A bits | chip | cells | arrays used / available | segments | "
          "inferences/s | latency | energy / inference | of which writes | area (mm2) | "
          "TOPS | TOPS/W | TOPS/mm2 |")
RULE = "|:--|--:|:--|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"


def row(net: Net, v: Variant, cell_bits: int, c: dict[str, Any] | str) -> str:
    chip = v.chip + (f" ({v.note})" if v.note else "")
    head = f"| {net.label} | {net.weight_bits}/{net.act_bits} | {chip} | {cell_bits}-bit |"
    if isinstance(c, str):
        return head + f" does not fit: {c} |" + " |" * 9
    return head + " ".join([
        f" {count_text(c['arrays_used'])} / {count_text(c['arrays_available'])} |",
        f"{c['segments']} |",
        f"{count_text(round(c['throughput_ips']))} |",
        f"{time_text(c['latency_ns'])} |",
        f"{energy_text(c['energy_per_inference_pj'])} |",
        f"{energy_text(c['write_energy_pj'])} |",
        f"{sig_text(c['area_mm2'], 4)} |",
        f"{sig_text(c['tops'], 3)} |",
        f"{sig_text(c['tops_per_w'], 3)} |",
        f"{sig_text(c['tops_per_mm2'], 3)} |"])


# NeuroSim V1.4's published VGG-8 / CIFAR-10 run: the first row of Data/1.4_Release_test.csv
# in github.com/neurosim/DNN_NeuroSim_V1.4 (columns in the order main.cpp writes them).
NEUROSIM = {"area_mm2": 84.7747, "tops_per_w": 23.9369, "tops": 6.3423, "fps": 5148.66,
            "tops_per_mm2": 0.0748136, "ops": 1.23184e9, "latency_us": 194.225,
            "energy_uj": 42.1818}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    rows: list[str] = []
    facts: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for net in NETS:
            if net.source == "resnet20":
                model = resolve_model("resnet20")
            else:
                model = Path(tmp) / f"{net.source}.onnx"
                onnx.save(BUILDERS[net.source](0), model)
            for chip, cells in CELLS.items():
                variants = [Variant(chip)] + [v for cb, v in EXTRA.get(net.source, [])
                                              if cb == cells and v.chip == chip]
                plain, res = compile_variants(model, net, cells, variants)
                if net.source == "vgg8" and chip == "isaac":
                    # the NeuroSim setting, and the quantized compile giving the same figures
                    n = plain["n_arrays"]
                    extra = neurosim_variant(n)
                    _, (ns,) = compile_variants(model, net, cells, [extra])
                    variants.append(extra)
                    res.append(ns)
                    facts["vgg8_tiles"] = n
                    facts["vgg8_isaac"], facts["vgg8_neurosim"] = res[0], ns
                    _, (q,) = compile_variants(model, Net(net.label, net.source, 8, 8, True),
                                               cells, [Variant(chip)])
                    assert isinstance(q, dict) and isinstance(res[0], dict)
                    same = ("arrays_used", "segments", "throughput_ips", "latency_ns",
                            "energy_per_inference_pj", "area_mm2", "tops_per_w")
                    assert all(q[k] == res[0][k] for k in same), "quantized figures differ"
                rows += [row(net, v, cells, c) for v, c in zip(variants, res, strict=True)]
                print(f"{net.label} on {chip}: done", file=sys.stderr)
    ns = facts["vgg8_neurosim"]
    isaac = facts["vgg8_isaac"]
    lines = [
        "# Chip-level figures",
        "",
        "Generated by `python scripts/chip_table.py` (do not edit by hand). Each row is "
        "`imcc compile MODEL --chip CHIP [--chip-arrays N] [--chip-batch B]` on 128x128 "
        "arrays with the `auto` mapping and the `isaac` tech profile unless the chip column "
        "says otherwise; the figures are the report's `chip` object (defined in "
        "[reports.md](reports.md#chip-level-figures---chip); model and search in "
        "`imcc/analysis/place.py`). ISAAC runs imcc's default 1-bit cells, PIMCOMP-NN Arch-A "
        "its 2-bit cells. ResNet-20 is the bundled pretrained network (quantized W4A4); "
        "VGG-8 (NeuroSim's CIFAR-10 VGG-8, 8-bit as NeuroSim runs it), ResNet-18 and VGG-16 "
        "(ImageNet shapes) are built by `benchmarks/cnn.py` with random weights: the chip "
        "figures depend on the layer shapes and bit widths only. A batch of 1 (the presets') "
        "means a segmented model reprograms its weights for every inference; `batch 64` "
        "shares one reload among 64 inferences.",
        "",
        HEADER, RULE, *rows,
        "",
        "Reading the table: with spare arrays imcc replicates the slowest layers until the "
        "pipeline's bottleneck is an inter-core activation transfer or a layer with a single "
        "window, so a network that fits uses nearly all 16,128 arrays; a network larger than "
        "the chip is cut into segments, and its throughput is then bounded by writing the "
        "weights (50 ns per row, 2 pJ per cell: the presets' estimates; all arrays of a "
        "segment are written in parallel, an optimistic assumption of the chip model), which "
        "batching amortizes. The area is the whole chip's (the arrays available), not the "
        "part used.",
        "",
        "## Against NeuroSim V1.4 (VGG-8, CIFAR-10)",
        "",
        f"NeuroSim V1.4's release test of its default run (VGG-8 on CIFAR-10, 8-bit weights "
        f"and activations, 128x128 RRAM sub-arrays with 1-bit cells, 22 nm, all weights on "
        f"chip, layer-by-layer; the first row of `Data/1.4_Release_test.csv` in "
        f"[neurosim/DNN_NeuroSim_V1.4](https://github.com/neurosim/DNN_NeuroSim_V1.4), read "
        f"with the column order of its `main.cpp`) reports a chip of "
        f"{NEUROSIM['area_mm2']:.2f} mm2, {NEUROSIM['tops_per_w']:.2f} TOPS/W, "
        f"{NEUROSIM['tops']:.2f} TOPS, {NEUROSIM['fps']:,.0f} images/s "
        f"({NEUROSIM['latency_us']:.1f} us per image), {NEUROSIM['tops_per_mm2']:.4f} TOPS/mm2 "
        f"and {NEUROSIM['ops']:.4g} operations per image. imcc counts "
        f"{ns['ops_per_inference']:,} operations for the same network (the same shapes), "
        f"and maps it on {facts['vgg8_tiles']:,} arrays of 128x128 at 8-bit weights on "
        f"1-bit cells. On a chip of exactly those arrays with NeuroSim's energies (`--tech "
        f"neurosim`, the row above) imcc gives {sig_text(ns['tops_per_w'], 3)} TOPS/W, "
        f"{sig_text(ns['tops'], 3)} TOPS, {count_text(round(ns['throughput_ips']))} "
        f"inferences/s, {time_text(ns['latency_ns'])} latency and "
        f"{sig_text(ns['area_mm2'], 4)} mm2; on the full ISAAC preset "
        f"{sig_text(isaac['tops_per_w'], 3)} TOPS/W and {sig_text(isaac['tops'], 3)} TOPS. "
        "What differs: NeuroSim runs the layers one after another (its throughput is 1 / "
        "latency) where imcc pipelines them (throughput = 1 / slowest stage) and replicates "
        "layers into spare arrays; NeuroSim's floorplan also duplicates a layer's weights into "
        "the sub-arrays and PEs its tiles leave free (`SubArrayDup` and `PEDesign` in its "
        "`Chip.cpp`), so its layers compute several windows at once, which the exact-size imcc "
        "row (no spare arrays) does not, and imcc's window step is the tech profile's (16 "
        "ADCs at 125 MHz per array: 64 ns per input bit here), NeuroSim's its circuit timing: "
        f"hence {NEUROSIM['latency_us']:.1f} us against {time_text(ns['latency_ns'])}. "
        "NeuroSim's energy comes from circuit models of every "
        "peripheral at 22 nm (its run has `levelOutput` 16, i.e. 4-bit ADCs, which imcc's row "
        "matches, and a 0.18 input toggle rate) and includes leakage, buffers and interconnect,"
        " while imcc's tech profile charges per-event array, ADC, driver and shift-add energies"
        " and only the buffer traffic of the crossbar inputs (`imcc/analysis/tech/`); NeuroSim "
        "sizes its chip to the network (tiles, buffers and H-tree/bus from its floorplan), "
        "while imcc's area is the chip description's per-component areas (ISAAC's 32 nm Table "
        "2). So the operation counts agree, and the rest agrees only as far as these models do:"
        " the comparison checks orders of magnitude, not the last digit.",
        "",
    ]
    text = "\n".join(lines)
    args.out.write_text(text)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
