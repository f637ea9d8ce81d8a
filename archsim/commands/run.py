"""`archsim run`: one design point through the analytical model (mapper included) or the event model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import click

from archsim import library
from archsim.commands.options import SET, WORKLOAD, nan_as_null, nonempty, parse_sets, show_result
from archsim.errors import SpecError
from archsim.mapping.choice import choice_lines, searched_entries
from archsim.mapping.spec import Mapping
from archsim.outputs import CHROME_TRACE, check_writable
from archsim.workload import PARAMS


@click.command("run")
@click.option("--mapping", "-m", required=True, metavar="M", callback=nonempty, help="Mapping name or YAML path.")
@click.option("--cascade", "-c", metavar="C", callback=nonempty, help="Cascade (default: the mapping's).")
@click.option("--arch", "-a", metavar="A", callback=nonempty, help="Architecture (default: the mapping's).")
@WORKLOAD
@SET
@click.option("--json", "as_json", is_flag=True,
              help="Print the Result as JSON, with the record a sweep stores for the point under `record` and the "
                   "loop entries the mapper filled under `searched_loops` (group -> entry -> {level, ranks}).")
@click.option("--model", "model_kind", type=click.Choice(["analytical", "event"]), default="analytical",
              show_default=True, help="The analytical model, or the event-driven (SimPy) one with stall sources.")
@click.option("--trace", "trace_path", type=click.Path(dir_okay=False), callback=nonempty,
              help="[--model event] Write the timeline as Chrome/Perfetto trace JSON here (an infeasible point "
                   "has none: nothing is written, and stderr says why).")
def run_cmd(mapping: str, cascade: str | None, arch: str | None, workload: str | None, sets: tuple[str, ...],
            as_json: bool, model_kind: str, trace_path: str | None) -> None:
    """Evaluate one design point with the analytical model (or the event-driven one).

    Examples:

    \b
      archsim run --mapping fusemax --workload bert-base --set seq_len=65536
      archsim run --mapping flat --workload bert-base --model event --trace flat.json
    """
    # at test sizes, a mapping that does not load is its own error, before the run
    spec = library.load_mapping_spec(mapping) if at_test_sizes(workload, sets) else mapping
    with noting_test_sizes(spec, workload, sets):
        _run(spec, cascade, arch, workload, sets, as_json, model_kind, trace_path)


def at_test_sizes(workload: str | None, sets: tuple[str, ...]) -> bool:
    """Whether a point runs at its cascade's small test sizes (seq_len 16 for attention): no --workload and no model
    size (`archsim.workload.PARAMS`) in --set."""
    return workload is None and not set(parse_sets(sets)) & set(PARAMS)


@contextmanager
def noting_test_sizes(mapping: str | Mapping, workload: str | None, sets: tuple[str, ...]) -> Iterator[None]:
    """Run the block (`archsim run`'s or `archsim report --run`'s point); where the point runs at its cascade's test
    sizes (`at_test_sizes`), a mapping sized for a model (tile factors, a fan-out of 256) fails on them, so a
    SpecError blamed on the mapping's file (`mapping`: a Mapping, or a name or path loaded for its source) says so
    (`cascade.bind`'s partition errors, blamed on the cascade, already name the default and suggest --workload;
    other specs' and options' errors are their own)."""
    try:
        yield
    except SpecError as error:
        if not at_test_sizes(workload, sets):
            raise
        source = mapping.source if isinstance(mapping, Mapping) else library.load_mapping_spec(mapping).source
        if error.source != source or "--workload" in error.message:
            raise
        raise SpecError(error.source, error.where, f"{error.message} (run without --workload: the cascade's small "
                                                   "test sizes; pass --workload W for a model's)") from error


def _run(mapping: str | Mapping, cascade: str | None, arch: str | None, workload: str | None, sets: tuple[str, ...],
         as_json: bool, model_kind: str, trace_path: str | None) -> None:
    from archsim.point import answered, prepare, simulate_point

    if trace_path and model_kind != "event":
        raise click.UsageError("--trace needs --model event (the analytical model has no timeline)")
    if trace_path:
        source = mapping.source if isinstance(mapping, Mapping) else mapping
        check_writable(trace_path, "--trace", inputs=(source, cascade, arch, workload), kind=CHROME_TRACE)
    options = {"cascade": cascade, "arch": arch, "workload": workload, "sets": parse_sets(sets),
               "sets_source": "--set"}
    spec = mapping if isinstance(mapping, Mapping) else library.load_mapping_spec(mapping)
    if model_kind == "event":
        from archsim.model.trace import write_chrome_trace

        point, run = simulate_point(spec, **options)
        result = run.result
        if trace_path and result.feasible:
            write_chrome_trace(run.timeline, trace_path)
        elif trace_path:  # no timeline to draw; an earlier file at the path stays
            click.echo(f"note: no trace written to {trace_path}: the point is infeasible "
                       f"({result.reason or 'no reason given'})", err=True)
    else:
        point = prepare(spec, **options)
        result = answered(point)
    choice = searched_entries(spec, point.mapping)
    if as_json:
        click.echo(json.dumps({**result.to_dict(), "record": nan_as_null(result.record().row()),
                               "searched_loops": choice}, indent=2))
    else:
        show_result(result)
        if choice:
            click.echo("\n  the mapper's choice (write it over the loops with `search` to fix the tiles):")
            for line in choice_lines(choice):
                click.echo(f"    {line}")

