"""`archsim analyze` (shapes, bytes, ops, passes of a cascade) and `archsim execute` (the numpy interpreter)."""

from __future__ import annotations

import json
import sys

import click

from archsim import library
from archsim.cascade.analysis import Analysis
from archsim.cascade.bind import bind
from archsim.cascade.reference_check import CHECK_TOLERANCE
from archsim.commands.options import SET, WORKLOAD, WholeRange, nonempty, parse_sets


def _show_analysis(analysis: Analysis) -> None:
    click.echo(f"cascade {analysis.cascade}")
    click.echo("ranks   " + " ".join(f"{r}={n}" for r, n in analysis.rank_sizes.items()))
    click.echo("\nEinsum       points            ops")
    for name, ops in analysis.ops.items():
        shown = ", ".join(f"{op} {n:.4g}" for op, n in ops.items()) or "-"
        click.echo(f"  {name:<10} {analysis.points[name]:<17.6g} {shown}")
    click.echo("  total        " + ", ".join(f"{op} {n:.4g}" for op, n in sorted(analysis.total_ops().items())))
    click.echo("\ntensor       kind          shape                         bytes")
    for t in analysis.tensors:
        shape = "[" + ", ".join(f"{r}={n}" for r, n in zip(t.ranks, t.shape, strict=True)) + "]"
        click.echo(f"  {t.name:<10} {t.kind:<13} {shape:<29} {t.bytes:.4g}")
    click.echo("\npasses  " + " ".join(f"{r}={n}" for r, n in analysis.passes.passes.items()))
    for boundary in analysis.passes.boundaries:
        click.echo("  " + boundary.explain())


@click.command("analyze")
@click.argument("cascade", callback=nonempty)
@WORKLOAD
@SET
@click.option("--json", "as_json", is_flag=True, help="Print the analysis as JSON (see README for the schema).")
def analyze_cmd(cascade: str, workload: str | None, sets: tuple[str, ...], as_json: bool) -> None:
    """Shapes, bytes, operation counts and passes of a cascade.

    Example: archsim analyze attention-1pass-causal-gqa --workload llama3-8b --set M0=256 --json
    """
    from archsim.point import bound

    _, analysis = bound(cascade, workload, parse_sets(sets), sets_source="--set")  # run's checks of them all
    if as_json:
        click.echo(json.dumps(analysis.to_dict(), indent=2))
    else:
        _show_analysis(analysis)


@click.command("execute")
@click.argument("cascade", callback=nonempty)
@WORKLOAD
@SET
@click.option("--seed", type=WholeRange(min=0, max=2**32 - 1), default=0, show_default=True,
              help="Seed of the random inputs.")
@click.option("--check", "check_ref", is_flag=True, help=f"Compare with the reference (max abs error < "
                                                         f"{CHECK_TOLERANCE:g}); exit 1 if it differs.")
def execute_cmd(cascade: str, workload: str | None, sets: tuple[str, ...], seed: int, check_ref: bool) -> None:
    """Run a cascade on seeded random inputs with the numpy interpreter.

    Example: archsim execute attention-1pass-causal --check
    """
    import numpy as np

    from archsim.cascade.interpret import execute, random_inputs
    from archsim.cascade.reference_check import reference_errors, worst_error
    from archsim.cascade.references import REFERENCES, check_sizes
    from archsim.errors import SpecError
    from archsim.point import bound

    values = parse_sets(sets)
    # without a workload the cascade runs at test sizes, some set (`--set seq_len=3`): execute answers whether the
    # cascade computes its reference, which holds at any sizes, so the model sizes need not all be given
    binding = (bound(cascade, workload, values, sets_source="--set")[0] if workload is not None
               else bind(library.load_cascade_spec(cascade), None, values, source="--set"))
    spec = binding.cascade
    if check_ref and spec.reference is None:  # a check that compares nothing must not pass
        raise SpecError(spec.source, "reference", f"missing: --check compares {spec.name} with its reference, and it "
                                                  f"names none: expected a reference: line naming one of the "
                                                  f"{len(REFERENCES)} in archsim.cascade.references (attention, "
                                                  "attention_causal, ...), or run without --check")
    if check_ref:  # the layouts were checked when the cascade loaded
        check_sizes(binding)
    inputs = random_inputs(binding, seed)
    with np.errstate(all="ignore"):  # a value not finite is counted below, not warned line by line
        results = execute(binding, inputs)
    for name in spec.outputs:
        value = results[name]
        finite = value[np.isfinite(value)]
        bad = value.size - finite.size
        stats = f"mean {finite.mean():.6g}, std {finite.std():.6g}" if finite.size else "no finite value"
        click.echo(f"{name} shape {value.shape}: {stats}" + (f" ({bad} of {value.size} values not finite)"
                                                              if bad else ""))
    if not check_ref:
        return
    with np.errstate(all="ignore"):  # the reference's own (a softmax over no key) shows as a NaN error below
        errors = reference_errors(binding, inputs, results)
    for name in spec.outputs:
        click.echo(f"{name} vs reference {spec.reference}: max abs error {errors[name]:.3g}" if name in errors
                   else f"{name}: not compared (reference {spec.reference} gives {', '.join(errors)})")
    worst = worst_error(errors)
    if not worst < CHECK_TOLERANCE:  # NaN fails too
        click.echo(f"FAIL: error {worst:.3g} >= {CHECK_TOLERANCE:g}", err=True)
        sys.exit(1)
    click.echo("ok")

