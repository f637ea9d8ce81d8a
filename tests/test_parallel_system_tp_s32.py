"""`archsim parallel --system FILE` refuses a tp the file sets naming the file and its field (`parallelism.tp`), as
`archsim simulate` does (`System.blame`), not `--tp`, which the user never passed; a --tp given keeps its name."""

from pathlib import Path

import yaml
from click.testing import CliRunner

from archsim.cli import main
from archsim.systems.system_spec import load_system


def _system_with_tp(tmp_path: Path, tp: int) -> Path:
    data = yaml.safe_load(Path(load_system("context-parallel-h100").source).read_text())
    data["parallelism"]["tp"] = tp
    path = tmp_path / "cp.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_system_files_tp_is_blamed_on_the_file(tmp_path: Path) -> None:
    """tp 12 on the preset's 8-GPU nodes: a TP group inside a node divides 8."""
    path = _system_with_tp(tmp_path, 12)
    result = CliRunner().invoke(main, ["parallel", "--system", str(path), "--workload", "llama3-70b",
                                       "--seq-len", "131072", "--json"])
    assert result.exit_code == 2
    assert f"{path}: parallelism.tp: expected a divisor of the 8 devices per node" in result.output
    given = CliRunner().invoke(main, ["parallel", "--system", str(path), "--workload", "llama3-70b",
                                      "--seq-len", "131072", "--tp", "12", "--json"])
    assert given.exit_code == 2 and "--tp: expected a divisor of the 8 devices per node" in given.output
