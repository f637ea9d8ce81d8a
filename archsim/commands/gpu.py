"""`archsim calibrate` and `archsim validate`: fit the GPU model on measured attention kernels, and compare; and
`archsim gpu-roofline`: a workload's attention kernels on a GPU against its roofline.

Both read a CSV in the schema of the published `attention_measured.csv` (default: the packaged copy,
`archsim/gpu/reference/attention_measured.csv`). A bad CSV (missing column, malformed field of a kernel-time row,
a configuration measured twice) or a bad calibration file exits with code 2 and one line naming the file, the row
(or lines) and the field. A row's `gpu` label names a preset (`archsim.gpu.load.gpu_for`), or the GPU `--gpu
LABEL=GPU` maps it to (a preset name or a GPU YAML path, loaded as any preset); a label is never read as a path.
A bad mapping (no `=`, a label given twice or on no row, a GPU that finds no preset or file, a bad GPU file, a
GPU file named as another GPU the rows use) exits with code 2 too.
"""

from __future__ import annotations

import csv
import importlib.resources
import json
import math
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import click

from archsim.commands.options import named, names_among, nonempty, whole_number
from archsim.errors import SpecError
from archsim.outputs import atomic_dir, atomic_file, check_writable, write_text

if TYPE_CHECKING:
    from archsim.gpu.roofline import RooflinePoint

REFERENCE_CSV = "attention_measured.csv"
DEFAULT_CALIBRATION = "v2"  # archsim.gpu.params.DEFAULT_VERSION, named here so --help needs no import of the model
SPLIT_CHOICES = ("seqlen", "leave-one-gpu-out")
_MEASUREMENTS = click.option("--measurements", metavar="CSV", type=click.Path(dir_okay=False), callback=nonempty,
                             help="Measurements in the attention_measured.csv schema (default: the packaged "
                                  "published measurements).")
_GPUS = click.option("--gpu", "gpu_maps", multiple=True, metavar="LABEL=GPU",
                     help="Take the rows whose gpu column is LABEL (case, spaces and punctuation ignored) as run on "
                          "GPU: a preset name or a GPU YAML path (see archsim/gpu/presets; checked as a preset is). "
                          "Repeatable; each LABEL must be on a row. Any other label names a preset by its name, "
                          "alias or model/memory/form tokens; a label is never read as a file path.")


def _by_reason(infeasible: list[tuple[str, str]]) -> str:
    """Each reason once, after the kernels it stops ('prefill fwd FA2, prefill fwd FA3: ...; decode ...: ...'), in
    the order first met: a limit that stops the prefill kernels beside memory that stops the decode ones shows both."""
    labels: dict[str, list[str]] = {}
    for label, reason in infeasible:
        labels.setdefault(reason, []).append(label)
    return "; ".join(f"{', '.join(names)}: {reason}" for reason, names in labels.items())


def reference_csv() -> Path:
    """The packaged GPU attention measurements (`archsim/gpu/reference/attention_measured.csv`), the default
    `--measurements` of calibrate and validate."""
    return Path(str(importlib.resources.files("archsim.gpu") / "reference" / REFERENCE_CSV))


def _gpu_maps(items: tuple[str, ...]) -> dict:
    """{label: GPU} of `--gpu LABEL=GPU` items: each label once (as `label_key` compares them), each GPU a preset
    name or a YAML path that loads (`archsim.systems.links.load_gpu_with_host_link`); a SpecError naming the option
    or the file."""
    from archsim.gpu.load import label_key
    from archsim.systems.links import load_gpu_with_host_link

    gpus, given = {}, {}
    for item in items:
        label, sep, gpu = (part.strip() for part in item.partition("="))
        if not sep or not label_key(label) or not gpu:
            raise SpecError("--gpu", item, "expected LABEL=GPU: a gpu label of the CSV, then a GPU preset name or "
                                           "YAML path, e.g. --gpu 'NVIDIA L4=l4.yaml'")
        if label_key(label) in given:
            raise SpecError("--gpu", item, f"the label {label!r} is mapped twice (also by "
                                           f"{given[label_key(label)]!r}); map each label once")
        given[label_key(label)] = item
        gpus[label] = named("--gpu", gpu, load_gpu_with_host_link)
    return gpus


def _mapped_line(gpus: dict) -> str:
    """The GPUs `--gpu` mapped, as the commands print them."""
    from archsim.gpu.load import gpu_reference

    return "GPU labels mapped: " + "; ".join(f"{label!r} -> {gpu_reference(gpu)}" for label, gpu in gpus.items())


@contextmanager
def _bad_input() -> Iterator[None]:
    try:
        yield
    except SpecError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


def _families(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[str, ...]:
    from archsim.model.gpu_kernels import FAMILIES

    return () if value is None else names_among(param.opts[0], value, FAMILIES, "kernel family")


@click.command("calibrate")
@_MEASUREMENTS
@_GPUS
@click.option("--out", metavar="YAML", type=click.Path(dir_okay=False), callback=nonempty,
              help="Write the calibration here (default, or -: print the YAML).")
@click.option("--families", metavar="F,..", callback=_families,
              help="Fit only these kernel families; every other family is kept as --base has it.")
@click.option("--base", metavar="V", callback=nonempty,
              help=f"With --families: the calibration (packaged version or YAML path) whose other families are "
                   f"kept [default: {DEFAULT_CALIBRATION}].")
def calibrate_cmd(measurements: str | None, gpu_maps: tuple[str, ...], out: str | None, families: tuple[str, ...],
                  base: str | None) -> None:
    """Fit the GPU model's per-family parameters on the calibration split (rows with seqlen 512, 2048 or 8192;
    every other row is held out for `archsim validate`). Exits 1, writing nothing, when no row is in that split.
    With --families, only those families are fitted (on the base's split) and the rest kept from --base, as the
    base's next version: how the packaged v2 adds archsim's kernels, fitted on H200 rows, to v1's A100 fit. A
    parameter of a fitted family that its rows cannot identify (a backward efficiency from forward rows alone)
    keeps the base's value, and a family of --families with no rows is kept whole; the printout and the file's fit
    notes (kept_from_base) say which. A value fitted to the end of its range is printed as at its bound. A GPU of
    your own: write its preset YAML and map the CSV's label to it with --gpu.

    Example: archsim calibrate --measurements runs/l4.csv --gpu 'NVIDIA L4=l4.yaml' --out calibration-l4.yaml
    """
    from archsim.gpu.calibrate import calibrate, calibration_yaml
    from archsim.gpu.params import CALIBRATION, load_calibration

    with _bad_input():
        if base is not None and not families:
            raise SpecError("--base", base, "only with --families (a full fit keeps nothing from a base)")
        gpus = _gpu_maps(gpu_maps)
        if out == "-":
            out = None
        if out:
            check_writable(out, "--out", inputs=(measurements or reference_csv(), base,
                                                 *(g.source for g in gpus.values())), kind=CALIBRATION)
        start = named("--base", base or DEFAULT_CALIBRATION, load_calibration) if families else None
        calibration = calibrate(measurements or reference_csv(), families, start, gpus)
        if not calibration.measurements["calibration_rows"]:
            click.echo(f"error: nothing to fit in {measurements or REFERENCE_CSV}: "
                       + _nothing_to_fit(measurements or reference_csv(), calibration, families, gpus)
                       + "; no calibration written", err=True)
            sys.exit(1)
        text = calibration_yaml(calibration)
        if out:
            write_text(out, text)
        else:
            click.echo(text, nl=False)
    to_stderr = not out  # the YAML went to stdout: the summary goes beside it, not into it
    if gpus:
        click.echo(_mapped_line(gpus), err=to_stderr)
    for family in calibration.params:
        click.echo(f"{family:<16} " + _fit_line(calibration, family, families, base or DEFAULT_CALIBRATION),
                   err=to_stderr)
    record = calibration.measurements
    others = "of the families kept from the base, " if families else ""
    click.echo(f"fitted on {record['calibration_rows']} of the file's {record['rows']} rows; the others are "
               f"{others}held out by the split or not modelled (`archsim validate` on the same file lists every row "
               f"it skips, and why)", err=to_stderr)
    if out:
        click.echo(f"calibration written to {out}")


def _nothing_to_fit(path: str | Path, calibration, families: tuple[str, ...], gpus) -> str:
    """Why a fit found no row: none of the `families` asked for has a row in the split (saying which families
    do), or none of the file's rows is a kernel time of a modelled kernel and GPU in it (with the commonest reason
    the split's rows were skipped: a GPU label no preset matches, as `archsim validate` lists them). Rows are
    counted as the fit counts them, one per measured case (`one_per_case`)."""
    from archsim.gpu.cases import resolve
    from archsim.gpu.measurements import one_per_case, read_measurements, skip_reasons
    from archsim.gpu.params import split_rule
    from archsim.model.gpu_kernels import family_of

    split = f"the calibration split ({split_rule(calibration.calibration_seqlens)})"
    rows = [m for m in one_per_case(read_measurements(path)[0])[0]
            if calibration.split_of(m.case.seqlen) == "calibration"]
    in_split = Counter(family_of(m.kernel) for m in rows)
    in_split.pop(None, None)
    if families and not any(in_split[f] for f in families):
        found = ", ".join(f"{f} ({n})" for f, n in sorted(in_split.items())) or "none"
        return f"no row of the families asked for ({', '.join(families)}) is in {split}; the families with rows " \
               f"there: {found}"
    asked = f" of {', '.join(families)}" if families else ""
    reasons = skip_reasons(resolve(rows, gpus=gpus)[1])
    why = "; {} of the split's rows: {}".format(*reversed(reasons[0])) if reasons else ""
    return f"none of its {calibration.measurements['rows']} rows is a kernel time{asked} of a modelled kernel and " \
           f"GPU in {split}{why}"


def _fit_line(calibration, family: str, families: tuple[str, ...], base: str) -> str:
    """What the fit did with one family: kept from `base` (a fit of `families` alone, which keeps one without
    calibration rows too), no rows (priors kept), or fitted: its values (at a bound, said), what its rows could not
    identify and where those values come from."""
    from archsim.gpu.calibrate import at_bound

    stats, params = calibration.fit.get(family, {}), calibration.family_params(family)
    if families and family not in calibration.measurements["families"]:
        return f"kept from {base}" + (" (no calibration rows in the file)" if family in families else "")
    if not stats.get("rows"):
        return "  0 rows: priors kept"

    def value(name: str) -> str:
        bound = at_bound(family, name, params[name])
        return f"{name}={params[name]:.4g}" + (f" (at its {bound} bound)" if bound else "")

    kept = stats.get("kept_from_base", [])
    unfitted = [n for n in stats.get("not_identifiable", []) if n not in kept]
    line = f"{stats['rows']:>3} rows, time MAPE {stats['time_mape_pct']:5.2f} %: " + ", ".join(
        value(n) for n in calibration.fitted.get(family, ()) if n not in kept)
    if kept:
        line += f"; not identifiable from these rows, kept from {base}: " + ", ".join(map(value, kept))
    if unfitted:
        line += "; not identifiable from these rows, unfitted: " + ", ".join(map(value, unfitted))
    return line


@click.command("validate")
@_MEASUREMENTS
@_GPUS
@click.option("--calibration", default=DEFAULT_CALIBRATION, show_default=True, metavar="V", callback=nonempty,
              help="A packaged calibration version or a calibration YAML path.")
@click.option("--json", "as_json", is_flag=True,
              help='Print {"rows": [...], "skipped": [...], "mape": {...}, "mape_held_out": {...}, ...} as JSON.')
@click.option("--out", metavar="DIR", type=click.Path(file_okay=False), callback=nonempty,
              help="Also write validation.csv, skipped.csv and a model-vs-measured scatter validation.png here.")
@click.option("--split", type=click.Choice(SPLIT_CHOICES), default="seqlen", show_default=True,
              help="seqlen: the calibration file's split (the rows it was fitted on, whatever file they come in; "
                   "every other row held out); leave-one-gpu-out: also fit on all GPUs but one and test on it, for "
                   "each GPU, reported beside the seqlen split.")
def validate_cmd(measurements: str | None, gpu_maps: tuple[str, ...], calibration: str, as_json: bool,
                 out: str | None, split: str) -> None:
    """Predict every supported row of a measurements CSV, beside the pure roofline; print the MAPE per
    (gpu, kernel, direction) group on the held-out and calibration splits (and leave-one-GPU-out with
    --split leave-one-gpu-out). Exits 1 when no row could be compared, listing why each row was skipped. A GPU
    of your own: write its preset YAML and map the CSV's label to it with --gpu.

    Examples: archsim validate --split leave-one-gpu-out --out reports/gpu;
    archsim validate --measurements runs/l4.csv --gpu 'NVIDIA L4=l4.yaml' --calibration calibration-l4.yaml
    """
    from archsim.gpu.params import load_calibration
    from archsim.gpu.validate import comparison_record, validate, validation_to_dict

    with _bad_input():
        if out:
            check_writable(out, "--out", directory=True)
        gpus = _gpu_maps(gpu_maps)
        result = validate(measurements or reference_csv(), named("--calibration", calibration, load_calibration),
                          leave_one_gpu_out=split == "leave-one-gpu-out", gpus=gpus)
        if out:
            from archsim.gpu.figures import write_scatter

            with atomic_dir(out) as folder:  # the three files replace the old ones together
                _write_csv(folder / "validation.csv", [comparison_record(c) for c in result.comparisons])
                _write_csv(folder / "skipped.csv", [{"row": s.row, "reason": s.reason} for s in result.skipped])
                write_scatter(result, folder / "validation.png")
    if as_json:
        click.echo(json.dumps(validation_to_dict(result), indent=2))
    else:
        _show(result, measurements or f"the packaged {REFERENCE_CSV} (published measurements)", calibration, gpus)
        if out:
            click.echo(f"written: {out}/validation.csv, {out}/skipped.csv, {out}/validation.png")
    if not result.comparisons:
        where = "in the JSON's skipped rows" if as_json else "above"
        click.echo(f"error: no row of {measurements or REFERENCE_CSV} was compared ({len(result.skipped)} skipped, "
                   f"reasons {where})", err=True)
        sys.exit(1)


def _write_csv(path: Path, records: list[dict]) -> None:
    names = list(dict.fromkeys(k for r in records for k in r)) or ["row"]
    with atomic_file(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=names)
        writer.writeheader()
        writer.writerows(records)


def _show(result, measurements: str, calibration: str, gpus: dict) -> None:
    from archsim.gpu.measurements import skip_reasons
    from archsim.model.gpu_kernels import family_of

    cal = result.calibration
    click.echo(f"GPU model vs {measurements}, calibration {calibration} (version {cal.version})")
    click.echo(f"split: {cal.split_rule}")
    moved = Counter(family_of(c.measurement.kernel) for c in result.comparisons
                    if c.split == "held-out" and c.measurement.case.seqlen in cal.calibration_seqlens)
    fitted = {family_of(c.measurement.kernel) for c in result.comparisons if c.split == "calibration"}
    whole = sorted(f for f in moved if f not in fitted)
    if whole:
        click.echo(f"held out at every seqlen, their family not fitted on this file by {calibration}: the rows of "
                   f"{', '.join(whole)}")
    if fitted & set(moved):
        click.echo(f"held out at the calibration lengths too, not rows {calibration} was fitted on: " + ", ".join(
            f"{f} ({moved[f]})" for f in sorted(fitted & set(moved))))
    if gpus:
        click.echo(_mapped_line(gpus))
    columns = {"held-out": result.mape("held-out"), "calibration": result.mape("calibration"),
               "all": result.mape(), "roofline": result.mape(roofline=True)}
    if result.folds:
        columns["left-out GPU"] = result.fold_mape()
    counts = Counter(c.measurement.group for c in result.comparisons)
    counts["overall"] = len(result.comparisons)
    widths = (8, 11, 5, 8, 12)[:len(columns)]
    width = max(len(g) for g in counts)
    click.echo(f"\n{'MAPE % (gpu | kernel | direction)':<{width}}  rows  " + "  ".join(
        f"{name:>{w}}" for name, w in zip(columns, widths, strict=True)))
    for group in columns["all"]:
        cells = [columns[k].get(group) for k in columns]
        click.echo(f"{group:<{width}}  {counts[group]:>4}  " + "  ".join(
            f"{'-' if v is None else f'{v:.2f}':>{w}}" for v, w in zip(cells, widths, strict=True)))
    click.echo("\nMAPE = mean |predicted / measured - 1| in each row's own metric (TFLOPs/s or latency); roofline = "
               "max(FLOPs / tensor peak, DRAM bytes / bandwidth), no fitted parameters, over all rows")
    for fold in result.folds:
        click.echo(f"left-out GPU {fold.gpu}: {len(fold.comparisons)} rows predicted by a fit on "
                   f"{fold.fitted_rows} rows of the other GPUs{fold.priors_note()}")
    if result.folds:
        click.echo(_cross_gpu_line(result.folds))
    click.echo(f"skipped {len(result.skipped)} rows:")
    for reason, n in skip_reasons(result.skipped):
        click.echo(f"  {n:>3}  {reason}")


def _cross_gpu_line(folds) -> str:
    """The leave-one-GPU-out error over the families measured on more than one GPU (`validate.cross_gpu`)."""
    from archsim.gpu.validate import cross_gpu

    figure = cross_gpu(folds)
    head = "left-out GPU over the families measured on more than one GPU"
    if figure is None:
        return f"{head}: none (one GPU's rows, or no family with rows on two)"
    return (f"{head} ({', '.join(figure.families)}): {figure.mape_pct:.2f} % over {figure.rows} rows in "
            f"{figure.groups} groups")


@click.command("gpu-roofline")
@click.option("--gpu", "gpu_name", default="h100-sxm5", show_default=True, metavar="GPU", callback=nonempty,
              help="A GPU preset (archsim/gpu/presets) or a YAML path.")
@click.option("--workload", "-w", default="llama3-8b", show_default=True, metavar="W", callback=nonempty,
              help="A workload.")
@click.option("--seq-len", metavar="N", callback=whole_number,
              help="Override the workload's seq_len (prefill length, decode KV length): a whole number >= 1 (8K = "
                   "8192).")
@click.option("--calibration", default=DEFAULT_CALIBRATION, show_default=True, metavar="V", callback=nonempty,
              help="A packaged calibration version or a calibration YAML path: the kernels' parameters.")
@click.option("--causal/--no-causal", default=None,
              help="Whether the prefill is causal. Default: causal for a workload naming its decoder block; one "
                   "that names none (an encoder such as bert-base, or sizes alone) must say.")
@click.option("--out", type=click.Path(file_okay=False), default="reports/gpu-roofline", show_default=True,
              callback=nonempty, help="Write roofline.png and roofline.csv here.")
def gpu_roofline_cmd(gpu_name: str, workload: str, seq_len: int | None, calibration: str, causal: bool | None,
                     out: str) -> None:
    """Roofline of a workload's attention kernels on a GPU: each kernel (prefill forward/backward, causal for a
    decoder, `--no-causal` for an encoder; decode) as a point, modelled FLOP/s against FLOPs per DRAM byte, under
    the tensor, exp and bandwidth ceilings; writes roofline.png and roofline.csv (a row per kernel; one that cannot
    run the workload has empty numbers and its reason; exp_ceiling_flops_per_s is empty for a kernel the model runs
    no SFU exp in: no exp ceiling). A line names the calibration, the GPUs its kernel families were fitted on and
    what the GPU has measured of its own.

    Example: archsim gpu-roofline --gpu a100-80gb-sxm4 --workload llama3-8b --seq-len 8192
    """
    from archsim.gpu.figures import write_roofline
    from archsim.gpu.params import load_calibration
    from archsim.gpu.provenance import provenance, provenance_line
    from archsim.gpu.roofline import workload_points
    from archsim.library import load_workload_spec
    from archsim.report.figures import si
    from archsim.systems.links import load_gpu_with_host_link
    from archsim.workload import check_size, refuse_linear_attention

    with _bad_input():
        folder = check_writable(out, "--out", directory=True)
        gpu = named("--gpu", gpu_name, load_gpu_with_host_link)
        spec = load_workload_spec(workload)
        refuse_linear_attention(spec, "the attention roofline")
        params = dict(spec.params)
        if seq_len is not None:
            params["seq_len"] = check_size("seq_len", seq_len, "--seq-len", "")
        loaded = named("--calibration", calibration, load_calibration)
        points, infeasible = workload_points(params, gpu, loaded.family_params, spec.path,
                                             {"seq_len": "--seq-len"} if seq_len is not None else None,
                                             causal=causal is not False)
        if not points:
            raise SpecError(spec.path, "params", f"no attention kernel of the roofline runs this workload on "
                                                 f"{gpu.name}: {_by_reason(infeasible)}")
        if causal is None and spec.block is None:  # after the workload's own checks, which come first
            raise SpecError("--causal", "", f"{spec.name} names no decoder block, so whether its prefill is causal "
                                            "is not known: give --causal (a decoder) or --no-causal (an encoder)")
        with atomic_dir(folder) as stage:
            _write_csv(stage / "roofline.csv", _roofline_rows(points, infeasible))
            write_roofline(gpu, points, stage / "roofline.png", f"{spec.name} attention kernels on {gpu.name}",
                           infeasible)
    for p in points:
        click.echo(f"{p.label:<24} {p.flops_per_byte:>9.4g} FLOP/B {si(p.flops_per_s, 'FLOP/s'):>13} "
                   f"(roofline {si(p.roofline_flops_per_s, 'FLOP/s')})")
    for label, reason in infeasible:
        click.echo(f"{label:<24} not modelled: {reason}")
    click.echo(provenance_line(provenance(loaded, gpu)))
    click.echo(f"written: {folder}/roofline.png, {folder}/roofline.csv")


def _roofline_rows(points: list[RooflinePoint], infeasible: list[tuple[str, str]]) -> list[dict]:
    """The rows of roofline.csv: each point (its exp ceiling empty where it is infinite: the model runs no SFU exp
    in that kernel), then each kernel that cannot run the workload, with empty numbers and its reason."""
    rows = [{**asdict(p), "exp_ceiling_flops_per_s": p.exp_ceiling_flops_per_s if math.isfinite(
        p.exp_ceiling_flops_per_s) else "", "reason": ""} for p in points]
    return rows + [{"label": label, "reason": reason} for label, reason in infeasible]
