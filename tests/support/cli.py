"""The check every bad-input table shares: one `error:` line, the exit code, no traceback."""
from __future__ import annotations


def assert_one_line_error(result, code: int, text: str) -> None:
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert text in lines[0]
    assert "Traceback" not in result.output
