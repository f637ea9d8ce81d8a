"""`archsim list` (what the library ships) and `archsim check` (validate spec files of any kind)."""

from __future__ import annotations

import json
import sys

import click

from archsim import library
from archsim.commands.spec_kinds import load_any
from archsim.errors import SpecError


def _contents() -> dict[str, list[str]]:
    from archsim.dse.spec import SWEEPS_PACKAGE
    from archsim.gpu.load import gpu_names
    from archsim.systems.links import link_names
    from archsim.systems.system_spec import system_names
    from archsim.systems.topology import topology_names
    from archsim.workload_patterns import pattern_map_names

    return {**{kind: library.names(kind) for kind in library.PACKAGES},
            "sweeps": library.names("sweeps", SWEEPS_PACKAGE),
            "gpus": gpu_names(), "links": link_names(), "systems": system_names(), "topologies": topology_names(),
            "patterns": pattern_map_names()}


@click.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print {kind: [names]} as JSON.")
def list_cmd(as_json: bool) -> None:
    """List the library: cascades, architectures, mappings, workloads, sweeps, GPU presets, links, systems,
    topologies, per-head pattern maps.

    Example: archsim list --json
    """
    contents = _contents()
    if as_json:
        click.echo(json.dumps(contents, indent=2))
        return
    for kind, names in contents.items():
        click.echo(f"{kind} ({len(names)}): {', '.join(names) if names else '-'}")


def _summary(kind: str, spec) -> str:
    """One line on a spec that loaded; a cascade is analysed too (its passes)."""
    if kind == "cascade":
        from archsim.cascade.analysis import analyze
        from archsim.cascade.bind import bind

        analysis = analyze(bind(spec))
        passes = ", ".join(f"{r}={n}" for r, n in analysis.passes.passes.items() if n > 1) or "1 everywhere"
        return f"cascade {spec.name}, {len(spec.einsums)} Einsums, passes {passes}"
    if kind == "measurements":
        timed, skipped = spec
        return f"{kind}, {len(timed)} rows the model times, {len(skipped)} skipped (not modelled or not timings)"
    if kind == "trace":
        return f"{kind}, {len(spec)} rows"
    if kind == "workload":
        return f"workload {spec.name}, {len(spec.params)} params"
    return f"{kind} {getattr(spec, 'name', '')}".rstrip()


@click.command("check")
@click.argument("files", nargs=-1, required=True, type=click.Path())
def check_cmd(files: tuple[str, ...]) -> None:
    """Validate spec files of any kind: cascades, workloads, mappings, architectures, GPU presets, calibrations,
    sweeps, links (YAML), request traces and GPU measurements (CSV). Exit 2 if any is bad.

    Example: archsim check einsum/*.yaml workloads/*.yaml mappings/*.yaml
    """
    bad = 0
    for path in files:
        try:
            if not path.strip():
                raise SpecError("''", "", "an empty path names no file")
            kind, spec = load_any(path)
            line = _summary(kind, spec)
        except SpecError as exc:
            click.echo(f"error: {exc}", err=True)
            bad += 1
            continue
        click.echo(f"ok  {path}: {line}")
    if bad:
        sys.exit(2)
