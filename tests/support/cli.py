"""What every bad-input table shares: invoking cl, the check of one `error:` line with its exit
code and no traceback, and a fingerprint of a folder to show that nothing in it changed."""
from __future__ import annotations

import hashlib
from pathlib import Path

from typer.testing import CliRunner

from cli.main import app


def assert_one_line_error(result, code: int, text: str) -> None:
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert text in lines[0]
    assert "Traceback" not in result.output


def fingerprint(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def invoke(args: list[str]):
    return CliRunner().invoke(app, [str(a) for a in args], prog_name="cl")
