"""`archsim list` (what the library ships) and `archsim check` (validate spec files of any kind)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from archsim import library
from archsim.commands.spec_kinds import load_any
from archsim.errors import SpecError
from archsim.spec_files import is_spec_path


def _packages() -> dict[str, tuple[str, str]]:
    """Each kind `archsim list` shows -> (the kind's name in messages, the package of its YAML files)."""
    from archsim import workload_patterns
    from archsim.dse.spec import SWEEPS_PACKAGE
    from archsim.gpu import load as gpus
    from archsim.systems import chip, links, system_spec, topology

    return {**{kind: (kind, package) for kind, package in library.PACKAGES.items()},
            "sweeps": ("sweeps", SWEEPS_PACKAGE), "gpus": ("GPU presets", gpus.PRESETS_PACKAGE),
            "chips": ("chip presets", chip.PRESETS_PACKAGE),
            "links": ("link presets", links.PRESETS_PACKAGE),
            "systems": ("system presets", system_spec.PRESETS_PACKAGE),
            "topologies": ("topology presets", topology.PRESETS_PACKAGE),
            "patterns": ("pattern maps", workload_patterns.PACKAGE)}


def _contents() -> dict[str, list[str]]:
    return {key: library.names(kind, package) for key, (kind, package) in _packages().items()}


def _library_files(name: str) -> list[str]:
    """The files of every kind that ships a spec named `name` (`fusemax` is an architecture and a mapping), and the
    packaged calibration of that version (`v2`), found as `--calibration V` finds it."""
    from archsim.gpu.params import packaged_path, packaged_versions

    files = [str(library.find(kind, name, package)) for kind, package in _packages().values()
             if name in library.names(kind, package)]
    return files + ([str(packaged_path(name))] if name in packaged_versions() else [])


@click.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print {kind: [names]} as JSON.")
def list_cmd(as_json: bool) -> None:
    """List the library: cascades, architectures, mappings, workloads, sweeps, GPU presets, chip presets, links,
    systems, topologies, per-head pattern maps.

    Example: archsim list --json
    """
    contents = _contents()
    if as_json:
        click.echo(json.dumps(contents, indent=2))
        return
    for kind, names in contents.items():
        click.echo(f"{kind} ({len(names)}): {', '.join(names) if names else '-'}")


def _summary(kind: str, spec) -> str:
    """One line on a spec that loaded; a cascade is analysed too (its passes), measurements counted (`_known_rows`)
    with the reasons rows were skipped, as `archsim validate` lists them."""
    if kind == "cascade":
        from archsim.cascade.analysis import analyze
        from archsim.cascade.bind import bind

        analysis = analyze(bind(spec))
        passes = ", ".join(f"{r}={n}" for r, n in analysis.passes.passes.items() if n > 1) or "1 everywhere"
        return f"cascade {spec.name}, {len(spec.einsums)} Einsums, passes {passes}"
    if kind == "measurements":
        from archsim.gpu.measurements import skip_reasons

        timed, skipped = spec
        reasons = "; ".join(f"{n} {reason}" for reason, n in skip_reasons(skipped))
        return (f"{kind}, {len(timed)} timed rows, {_known_rows(timed)} of a modelled kernel on a known GPU "
                f"(archsim validate says which it can time), {len(skipped)} skipped (not timings)"
                + (f": {reasons}" if reasons else ""))
    if kind == "trace":
        return f"{kind}, {len(spec)} rows"
    if kind == "workload":
        return f"workload {spec.name}, {len(spec.params)} params"
    if kind == "system":
        from archsim.systems.system_checks import weight_holder

        thresholds = "; ".join(f"placement[{i}] ({', '.join(rule.ops)} on {rule.device}) "
                               + (f"where faster than {weight_holder(spec).name}" if rule.faster
                                  else f"below {rule.op_per_byte_below:.4g} Op/B")
                               for i, rule in enumerate(spec.placement) if rule.op_per_byte_below is not None)
        return f"system {spec.name}" + (f", {thresholds}" if thresholds else "")
    return f"{kind} {getattr(spec, 'name', '')}".rstrip()


def _known_rows(timed: list) -> int:
    """How many timed rows are of a modelled kernel (`family_of`) on a GPU label that names a preset (as
    `archsim.gpu.cases.resolve` finds them): no plan is built, so a shape the kernel cannot run still counts."""
    from archsim.gpu.cases import preset_for
    from archsim.model.gpu_kernels import family_of

    known = {label: not isinstance(preset_for(label), str) for label in {m.gpu for m in timed}}
    return sum(1 for m in timed if family_of(m.kernel) is not None and known[m.gpu])


@click.command("check")
@click.argument("files", nargs=-1, required=True, type=click.Path())
def check_cmd(files: tuple[str, ...]) -> None:
    """Validate spec files of any kind: cascades, workloads, mappings, architectures, GPU presets, chip presets,
    calibrations, sweeps, links, systems, topologies, pattern maps (YAML), request traces (CSV, or Mooncake's
    JSON Lines) and GPU measurements (CSV). Exit 2 if any is bad. A system whose own degrees a run refuses is good,
    with a warning (a sweep or --tp may set others).

    A bare name (no '/', no suffix) that is no file here checks the library's specs of that name, of every kind
    `archsim list` shows, and a packaged calibration by its version, as --calibration takes it (v2).

    Examples: archsim check my-gpu.yaml trace.csv; archsim check fusemax bert-base v2
    """
    bad = 0
    for path in [found for given in files for found in _named(given)]:
        try:
            if not path.strip():
                raise SpecError("''", "", "an empty path names no file")
            if not is_spec_path(path) and not Path(path).exists():  # `_named` found no library spec of the name
                raise SpecError(path, "", "no such file, and no library spec of that name (archsim list names them)")
            kind, spec = load_any(path)
            line = _summary(kind, spec) + (_degrees_warning(spec) if kind == "system" else "")
        except SpecError as exc:
            click.echo(f"error: {exc}", err=True)
            bad += 1
            continue
        click.echo(f"ok  {path}: {line}")
    if bad:
        sys.exit(2)


def _degrees_warning(system) -> str:
    """What a run at a system spec's own degrees would refuse (`check_spec_degrees`), as a warning: the file is
    good, since `--tp`, a sweep's axes or a `by_workload` entry may set the degrees it runs at."""
    from archsim.systems.system_checks import check_spec_degrees

    try:
        check_spec_degrees(system)
    except SpecError as error:
        return f" (warning: a run at its own degrees is refused, unless --tp or a sweep's axes set others: {error})"
    return ""


def _named(given: str) -> list[str]:
    """The files `archsim check` reads for an argument: the path itself, or a bare name's library files."""
    if is_spec_path(given) or Path(given).is_file():
        return [given]
    return _library_files(given) or [given]
