"""One base class for what a user can cause, a traceback for everything else, one message each."""
from __future__ import annotations

import pytest
from support.cli import assert_one_line_error
from typer.testing import CliRunner

from centerloss import errors
from cli.main import app


def cl(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_every_user_error_derives_from_cl_error():
    """And every error class a user can cause is defined in errors.py: none hides elsewhere."""
    import ast
    from pathlib import Path
    root = Path(errors.__file__).parent
    elsewhere = [f"{p.relative_to(root)}:{n.name}" for p in root.rglob("*.py") if p.name != "errors.py"
                 for n in ast.walk(ast.parse(p.read_text())) if isinstance(n, ast.ClassDef)
                 and any(getattr(b, "id", getattr(b, "attr", "")).endswith("Error") for b in n.bases)]
    assert not elsewhere
    import inspect
    kinds = [k for _, k in inspect.getmembers(errors, inspect.isclass)
             if issubclass(k, Exception) and k.__module__ == errors.__name__]
    assert {"HeaderError", "DivergenceError", "WriteError", "MissingEpoch"} <= {k.__name__ for k in kinds}
    for kind in kinds:
        if kind is not errors.Interrupted:
            assert issubclass(kind, errors.ClError), kind
    assert not issubclass(errors.Interrupted, errors.ClError)   # a stop on request, not a mistake


def test_an_unexpected_value_error_shows_its_traceback(runs, monkeypatch):
    from centerloss.store import checkpoint as ckpt_io

    def broken(*_args, **_kwargs):
        raise ValueError("an internal slip")

    monkeypatch.setattr(ckpt_io, "resolve", broken)
    result = cl("eval", "--run", runs["flat"])
    assert result.exit_code == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert "ValueError: an internal slip" in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "error: this is a bug in cl, not a problem with what you gave it; please report it with "
        "the command you ran and the traceback above")
    assert not result.stderr.startswith("error: an internal slip")


def test_a_user_error_stays_one_line(runs, monkeypatch):
    from centerloss.store import checkpoint as ckpt_io

    def broken(*_args, **_kwargs):
        raise errors.DataError("the data went away; fetch it again")

    monkeypatch.setattr(ckpt_io, "resolve", broken)
    assert_one_line_error(cl("eval", "--run", runs["flat"]), 1, "the data went away; fetch it again")


@pytest.mark.parametrize("command", [
    ["eval"], ["export", "-o", "{tmp}/m.onnx"], ["embed", "-o", "{tmp}/e.csv"], ["plot"],
    ["plot", "--compare", "{run}", "{run}"], ["plot", "--roc"],
])
def test_a_missing_epoch_reads_the_same_everywhere(runs, tmp_path, command):
    args = [a.replace("{tmp}", str(tmp_path)).replace("{run}", str(runs["flat"])) for a in command]
    result = cl(*args, "--run", runs["flat"], "--epoch", "9")
    assert_one_line_error(result, 1, f"{runs['flat']} has no epoch 9; epochs present: 1, 2")
    assert result.stderr.strip().endswith("epochs present: 1, 2")
