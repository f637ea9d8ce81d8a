"""A file output replaces only an earlier output of its own kind (audit s52 E, finding 1): `--trace-out`,
`--layer-trace` and `run --trace` wrote over the spec files the named spec reads (a system's link or base, a
mapping's architecture), since only the paths named on the command line were compared; the next run then failed on
a trace where its spec was. And the serving trace's `kv_pages_used` counter (finding 2) held the pages of the
iteration's start after requests freed theirs: the cache read 7 pages through an idle gap in which it held none."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from archsim.errors import SpecError
from archsim.outputs import CHROME_TRACE, check_writable, is_chrome_trace
from archsim.systems import neupims
from archsim.systems.requests import Request
from archsim.systems.serving import ServingConfig, chrome_trace, simulate_serving
from archsim.systems.system_spec import load_system

ROOT = Path(__file__).resolve().parents[1]
ONE_REQUEST = "arrival_s,prompt_tokens,output_tokens\n0,16,4\n"


def _refused(output: str, path: Path) -> None:
    """One line naming the file and saying it is not an earlier output of the command."""
    line = output.strip()
    assert line.startswith("error: ") and "\n" not in line, output
    assert str(path) in line and "not a previous output of this command" in line, output


@pytest.fixture
def chained_system(tmp_path: Path) -> Path:
    """child.yaml (named) -> base1.yaml (its base, which no option names) -> npu-only; one request."""
    (tmp_path / "base1.yaml").write_text("name: base1\nbase: npu-only\n")
    (tmp_path / "child.yaml").write_text("name: child\nbase: base1.yaml\n")
    (tmp_path / "one.csv").write_text(ONE_REQUEST)
    return tmp_path


@pytest.mark.parametrize("option", ["--trace-out", "--layer-trace"])
def test_a_simulate_trace_does_not_overwrite_the_base_the_system_reads(cli, chained_system: Path, option: str,
                                                                      monkeypatch) -> None:
    monkeypatch.chdir(chained_system)
    base = chained_system / "base1.yaml"
    before = base.read_text()
    result = cli("simulate", "-s", "child.yaml", "-w", "gpt3-7b", "--trace", "one.csv", option, "base1.yaml",
                 expect=2)
    _refused(result.output, Path("base1.yaml"))
    assert base.read_text() == before
    cli("simulate", "-s", "child.yaml", "-w", "gpt3-7b", "--trace", "one.csv")  # the system still loads


def test_a_simulate_trace_does_not_overwrite_a_link_file_the_system_reads(cli, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    link = tmp_path / "slowlink.yaml"
    link.write_text("name: slowlink\ndescription: slow test link\nsource: audit\nlatency_s: 1.0e-6\n"
                    "bytes_per_s_per_direction: 2.0e+9\n")
    (tmp_path / "stag.yaml").write_text("name: stag-slow\nbase: lamina\nlinks:\n  attention: slowlink.yaml\n")
    (tmp_path / "one.csv").write_text(ONE_REQUEST)
    before = link.read_text()
    result = cli("simulate", "-s", "stag.yaml", "-w", "llama3-8b", "--trace", "one.csv", "--trace-out",
                 "slowlink.yaml", expect=2)
    _refused(result.output, Path("slowlink.yaml"))
    assert link.read_text() == before


def test_a_run_trace_does_not_overwrite_the_architecture_the_mapping_names(cli, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    arch = tmp_path / "arch_flat.yaml"
    shutil.copy(ROOT / "archsim/arch/presets/flat.yaml", arch)
    mapping = (ROOT / "mappings/flat.yaml").read_text().replace("architecture: flat", "architecture: arch_flat.yaml")
    (tmp_path / "map_flat.yaml").write_text(mapping)
    before = arch.read_text()
    args = ("run", "-m", "map_flat.yaml", "-w", "bert-base", "--set", "seq_len=1024", "--model", "event", "--trace")
    result = cli(*args, "arch_flat.yaml", expect=2)
    _refused(result.output, Path("arch_flat.yaml"))
    assert arch.read_text() == before
    cli(*args, "t.json")  # a new file, then the same file again: a rerun replaces its own earlier trace
    first = (tmp_path / "t.json").read_text()
    cli(*args, "t.json")
    assert is_chrome_trace(tmp_path / "t.json") and (tmp_path / "t.json").read_text() == first


def test_a_simulate_rerun_replaces_its_own_traces(cli, chained_system: Path, monkeypatch) -> None:
    monkeypatch.chdir(chained_system)
    args = ("simulate", "-s", "child.yaml", "-w", "gpt3-7b", "--trace", "one.csv", "--trace-out", "it.json",
            "--layer-trace", "layer.json")
    cli(*args)
    cli(*args)
    assert is_chrome_trace(chained_system / "it.json") and is_chrome_trace(chained_system / "layer.json")


def test_check_writable_with_a_kind_replaces_only_its_own_kind(tmp_path: Path) -> None:
    """An empty file, a missing one and an earlier trace may be replaced; YAML, other JSON, binary and unreadable
    text may not, each refusal naming the option, the file and what the output writes."""
    trace, empty = tmp_path / "t.json", tmp_path / "empty.json"
    trace.write_text(json.dumps({"traceEvents": [], "displayTimeUnit": "ns"}))
    empty.write_text("")
    for path in (trace, empty, tmp_path / "new.json"):
        assert check_writable(path, "--trace-out", kind=CHROME_TRACE) == path
    others = {"spec.yaml": b"name: x\nbase: npu-only\n", "list.json": b'[{"traceEvents": []}]',
              "other.json": b'{"events": []}', "bin.json": b"\xff\xfe\x00", "deep.json": b"[" * 100_000}
    for name, data in others.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(SpecError) as caught:
            check_writable(tmp_path / name, "--trace-out", kind=CHROME_TRACE)
        text = str(caught.value)
        assert "--trace-out" in text and name in text and "not a previous output of this command" in text, text
        assert CHROME_TRACE.what in text, text
    assert check_writable(tmp_path / "spec.yaml", "--trace-out") == tmp_path / "spec.yaml"  # no kind: as before


def test_a_link_to_a_spec_is_refused_and_a_special_file_written_through(tmp_path: Path) -> None:
    spec, link = tmp_path / "spec.yaml", tmp_path / "out.json"
    spec.write_text("name: x\n")
    link.symlink_to(spec.name)
    with pytest.raises(SpecError, match="not a previous output"):
        check_writable(link, "--trace-out", kind=CHROME_TRACE)
    assert check_writable("/dev/null", "--trace-out", kind=CHROME_TRACE) == Path("/dev/null")


def test_calibrate_replaces_a_calibration_but_no_other_file(cli, tmp_path: Path) -> None:
    gpu = tmp_path / "gpu.yaml"  # a GPU preset, as a --gpu map or a host link may read it
    gpu.write_text((ROOT / "archsim/gpu/presets/a100-80gb-sxm4.yaml").read_text())
    before = gpu.read_text()
    args = ("calibrate", "--families", "fa2", "--base", "v1", "--out")
    _refused(cli(*args, str(gpu), expect=2).output, gpu)
    assert gpu.read_text() == before
    out = tmp_path / "cal.yaml"
    cli(*args, str(out))
    first = out.read_text()
    cli(*args, str(out))  # a rerun replaces its own earlier calibration
    assert out.read_text() == first
    base = tmp_path / "base.yaml"  # the --base it keeps families from is an input: not written over
    shutil.copy(out, base)
    result = cli("calibrate", "--families", "fa2", "--base", str(base), "--out", str(base), expect=2)
    assert "is an input of this command" in result.output and base.read_text() == first, result.output


def _counter(trace: dict) -> list[tuple[float, int]]:
    return [(e["ts"], e["args"]["pages"]) for e in trace["traceEvents"] if e.get("name") == "kv_pages_used"]


def _pages_at(samples: list[tuple[float, int]], time_s: float) -> int:
    """The pages of the sample at `time_s` (one sample a time)."""
    (pages,) = [p for ts, p in samples if ts == pytest.approx(time_s * 1e6)]
    return pages


def test_the_kv_counter_drops_when_requests_free_their_pages() -> None:
    """Two requests 36 ms apart on NeuPIMs (the audit's repro): the counter reads 0 from the end of the first
    request's last iteration to the second's arrival, and 0 after the run's last iteration; each sample's time is
    unique, so a viewer has no tie to break."""
    model = neupims.system(load_system("neupims"), "gpt3-7b")
    requests = [Request(0, 0.0, 100, 3), Request(1, 0.036, 100, 3)]
    result = simulate_serving(model, requests, ServingConfig(), trace=True)
    samples = _counter(chrome_trace(result))
    times = [ts for ts, _ in samples]
    assert times == sorted(times) and len(set(times)) == len(times), samples
    second = next(it for it in result.timeline if it.start_s >= 0.036)  # the second request's first iteration
    idle_from_s = max(it.end_s for it in result.timeline if it.end_s <= second.start_s)
    assert idle_from_s < second.start_s and _pages_at(samples, idle_from_s) == 0, samples
    assert samples[-1][0] == pytest.approx(result.timeline[-1].end_s * 1e6) and samples[-1][1] == 0, samples
    for it in result.timeline:  # every iteration still shows the pages it ran with, from its start
        assert _pages_at(samples, it.start_s) == it.pages_used


def test_back_to_back_iterations_get_no_end_sample() -> None:
    """Where the next iteration starts as one ends, its start sample is the only one at that time."""
    model = neupims.system(load_system("neupims"), "gpt3-7b")
    requests = [Request(i, 0.0, 100, 2 + 3 * i) for i in range(3)]
    result = simulate_serving(model, requests, ServingConfig(), trace=True)
    samples = _counter(chrome_trace(result))
    times = [ts for ts, _ in samples]
    assert len(set(times)) == len(times) == len(result.timeline) + 1, samples
    assert [pages for _, pages in samples[:-1]] == [it.pages_used for it in result.timeline]
    assert samples[-1][1] == 0


def test_samples_at_one_time_keep_the_last() -> None:
    """An iteration of no time that frees pages before an idle gap, and one of no time followed at once by the next:
    one sample a time, the value that holds from then on."""
    from archsim.systems.serving import IterationRecord, kv_pages_samples

    timeline = [IterationRecord(0.0, 1.0, 1, 0, 16, 4, pages_after=4),
                IterationRecord(1.0, 1.0, 0, 1, 0, 4, pages_after=0),  # of no time, then the cache waits empty
                IterationRecord(2.0, 2.0, 1, 0, 16, 3, pages_after=3),  # of no time, the next at once
                IterationRecord(2.0, 3.0, 0, 1, 0, 3, pages_after=1)]
    assert kv_pages_samples(timeline) == [(0.0, 4), (1.0, 0), (2.0, 3), (3.0, 1)]
    assert kv_pages_samples([IterationRecord(0.0, 1.0, 1, 0, 16, 4, pages_after=4)]) == [(0.0, 4)]  # none freed
