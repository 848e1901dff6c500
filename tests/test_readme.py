"""The README's quick start: two commands, the second is exactly what CI runs, the demo solves."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from typer.testing import CliRunner

from placement.cli.main import app

ROOT = Path(__file__).parent.parent


def _quick_start() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section)


def test_quick_start_has_two_commands_and_ci_runs_the_second() -> None:
    """Two commands; .ci/run runs exactly the test command."""
    demo, tests = _quick_start()
    assert "placement solve configs/demo.toml" in demo
    assert "pytest" in tests
    ci_lines = [ln for ln in (ROOT / ".ci" / "run").read_text().splitlines() if ln and not ln.startswith(("#", "set ", "cd "))]
    assert ci_lines == [tests]


def test_demo_command_runs(tmp_path: Path) -> None:
    """The demo solve in the quick start works and writes its outputs."""
    demo, _ = _quick_start()
    args = shlex.split(demo.split("&& placement ", 1)[1])
    out_args = [str(tmp_path / a) if a.endswith((".csv", ".json")) else a for a in args]
    out_args = [str(ROOT / a) if a.startswith("configs/") else a for a in out_args]
    result = CliRunner().invoke(app, out_args + ["--backend", "reference"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "demo-plan.csv").exists() and (tmp_path / "demo-summary.json").exists()
