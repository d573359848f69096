"""`cl train` draws the live feature view on a terminal, and nowhere else: real runs under a
pseudo-terminal, tiny data (3 batches of 16), the seed net."""
from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from support.data import make_dataset
from support.runs import cli_flags, make_data, tiny_config

ROOT = Path(__file__).resolve().parents[2]


def env(columns: int = 100, rows: int = 40) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": str(columns), "LINES": str(rows),
            "TERM": "xterm-256color", "OMP_NUM_THREADS": "1"}


def train_in_terminal(args: list[str], columns: int = 100, rows: int = 40,
                      interrupt_when=None) -> tuple[int, str]:
    """Run `cl train ARGS` with its stdout and stderr on a pseudo-terminal; (exit code, output).
    interrupt_when(output so far) -> True sends the run one SIGINT, as Ctrl-C does."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "cli", "train", *args], stdin=slave,
                            stdout=slave, stderr=slave, env=env(columns, rows), cwd=ROOT)
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if not select.select([master], [], [], 1.0)[0]:
            continue
        try:
            data = os.read(master, 65536)
        except OSError:        # Linux: EIO once the child has closed the terminal
            break
        if not data:
            break
        chunks.append(data)
        if interrupt_when is not None and interrupt_when(b"".join(chunks).decode("utf-8", "replace")):
            proc.send_signal(signal.SIGINT)
            interrupt_when = None
    else:
        proc.kill()            # a hung run fails its test instead of hanging the suite
    os.close(master)
    return proc.wait(timeout=30), b"".join(chunks).decode("utf-8", "replace")


def has_legend(text: str) -> bool:
    """Whether the view's legend ends the frame: its centers entry, not a loss ending in 0 before
    the bar's "center" (ce 2.3010  center ...)."""
    return re.search(r"(?<![\d.])0  center", plain(text)) is not None


def plain(text: str) -> str:
    """The text without its terminal control sequences (colours, cursor moves)."""
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


def braille(text: str) -> int:
    return sum(0x2800 < ord(ch) <= 0x28FF for ch in text)


@pytest.fixture(scope="module")
def flags(tmp_path_factory) -> list[str]:
    data = make_data(tmp_path_factory.mktemp("livedata"))
    return cli_flags(tiny_config(data, epochs=1))


def test_a_terminal_shows_the_view_with_its_legend_and_the_evaluation(flags, tmp_path):
    code, out = train_in_terminal([*flags, "--out", str(tmp_path / "r")])
    assert code == 0, out
    assert braille(out) > 20
    assert has_legend(out) and "┌" in out
    assert "evaluating the test split" in plain(out)


def test_the_last_frame_stays_on_screen_when_training_ends(flags, tmp_path):
    """The bar and the view are transient while training; after the last epoch the view is drawn
    once more where nothing erases it, above the epoch's line."""
    code, out = train_in_terminal([*flags, "--out", str(tmp_path / "r")])
    assert code == 0, out
    last_erase = max(m.end() for m in re.finditer(r"\x1b\[(1A|2K)", out))
    kept = out[last_erase:]
    assert braille(kept) > 20 and has_legend(kept) and "┌" in kept
    assert plain(kept).index("┌") < plain(kept).index("epoch 1/1  ce")


def test_the_last_frame_stays_on_screen_after_ctrl_c(tmp_path):
    """Ctrl-C once the view is drawn: the run saves its state and says how to resume, and its
    last picture stays above that line, as after a finished run."""
    data = make_dataset(tmp_path / "data", n_train=480, n_test=32)
    code, out = train_in_terminal([*cli_flags(tiny_config(data, epochs=100)), "--out",
                                   str(tmp_path / "r")], interrupt_when=lambda o: braille(o) > 20)
    assert code == 128 + signal.SIGINT, out
    last_erase = max(m.end() for m in re.finditer(r"\x1b\[(1A|2K)", out))
    kept = out[last_erase:]
    assert braille(kept) > 20 and has_legend(kept) and "┌" in kept
    assert plain(kept).index("┌") < plain(kept).index("resume with: cl train --resume")


def test_no_live_on_a_terminal_keeps_the_bar_without_the_view(flags, tmp_path):
    code, out = train_in_terminal([*flags, "--out", str(tmp_path / "r"), "--no-live"])
    assert code == 0, out
    assert "━" in out and braille(out) == 0 and not has_legend(out)


def test_quiet_on_a_terminal_shows_no_view(flags, tmp_path):
    code, out = train_in_terminal([*flags, "--out", str(tmp_path / "r"), "--quiet"])
    assert code == 0, out
    assert braille(out) == 0 and "epoch 1/1" in out


def test_a_short_terminal_shows_no_view_unless_asked(flags, tmp_path):
    code, out = train_in_terminal([*flags, "--out", str(tmp_path / "a")], rows=15)
    assert code == 0 and braille(out) == 0, out
    code, out = train_in_terminal([*flags, "--out", str(tmp_path / "b"), "--live"], rows=15)
    assert code == 0 and braille(out) > 20, out


def test_a_pipe_shows_no_view_and_live_says_why(flags, tmp_path):
    result = subprocess.run([sys.executable, "-m", "cli", "train", *flags, "--out", str(tmp_path / "r"),
                             "--live"], capture_output=True, text=True, env=env(), cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert braille(result.stdout) == 0 and "\x1b[" not in result.stdout
    assert "epoch 1/1" in result.stdout
    assert "--live draws on a terminal only" in result.stderr


def test_live_with_quiet_or_json_is_a_usage_error(tmp_path):
    from typer.testing import CliRunner

    from cli.main import app
    for flag in ("--quiet", "--json"):
        result = CliRunner().invoke(app, ["train", "--live", flag, "--out", str(tmp_path / "r")])
        assert result.exit_code == 2 and "--live" in result.output
        assert not (tmp_path / "r").exists()
