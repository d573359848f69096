"""`cl train --live-window` under a virtual X display (Xvfb): the window opens, shows each
epoch's features in their class colours, and never holds training up. Skipped where Xvfb or
tkinter is missing (apt-get install xvfb python3-tk)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.runs import cli_flags, make_data, tiny_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def display():
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed")
    pytest.importorskip("tkinter")
    number = next(n for n in range(140, 200) if not Path(f"/tmp/.X{n}-lock").exists())
    server = subprocess.Popen(["Xvfb", f":{number}", "-screen", "0", "1024x768x24", "-nolisten", "tcp"],
                              stderr=subprocess.DEVNULL)
    env = {**os.environ, "DISPLAY": f":{number}"}
    for _ in range(50):         # until it accepts a client
        if subprocess.run([sys.executable, "-c", "import tkinter; tkinter.Tk().destroy()"], env=env,
                          capture_output=True).returncode == 0:
            break
        time.sleep(0.2)
    else:
        server.kill()
        pytest.fail("Xvfb did not start")
    yield f":{number}"
    server.terminate()
    server.wait(timeout=10)


def run_python(code: str, display: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DISPLAY": display, "OMP_NUM_THREADS": "1"}
    env.pop("MPLBACKEND", None)
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=120)


WINDOW = """
import json, time
import numpy as np
import matplotlib.pyplot as plt
from cli.livewindow import FeatureWindow, display_problem
assert display_problem() is None, display_problem()
window = FeatureWindow(["a", "b", "c"], "test")
rng = np.random.default_rng(0)
centers = np.array([[0.0, 3.0], [3.0, 0.0], [-3.0, -3.0]])
labels = np.arange(600) % 3
points = centers[labels] + rng.normal(0, 0.3, (600, 2))
start = time.perf_counter()
window.show(points, labels, centers, 2, "", {"test_accuracy": 0.5})
seconds = time.perf_counter() - start
window.fig.canvas.draw()
pixels = np.asarray(window.fig.canvas.buffer_rgba())[..., :3].reshape(-1, 3)
def count(rgb):   # pixels near a tab10 colour, blended a little with white by the scatter's alpha
    return int((np.abs(pixels.astype(int) - rgb).sum(1) < 120).sum())
print(json.dumps({"backend": plt.get_backend(), "seconds": seconds,
                  "mapped": bool(window.fig.canvas.get_tk_widget().winfo_ismapped()),
                  "title": window.fig.axes[0].get_title(),
                  "blue": count([31, 119, 180]), "orange": count([255, 127, 14]),
                  "green": count([44, 160, 44]), "red": count([214, 39, 40])}))
"""


def test_the_window_shows_the_features_in_class_colours_without_blocking(display):
    result = run_python(WINDOW, display)
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout.splitlines()[-1])
    assert got["backend"].lower() == "tkagg" and got["mapped"]
    assert got["seconds"] < 5                          # drawn and back, no event loop held
    assert "epoch 2" in got["title"] and "50.0%" in got["title"]
    assert min(got["blue"], got["orange"], got["green"]) > 100 and got["red"] < got["blue"] / 10


TRAIN = """
import json, sys
import cli.livewindow as w
shown = []
original = w.FeatureWindow.show
def show(self, points, labels, centers, epoch, note, metrics):
    original(self, points, labels, centers, epoch, note, metrics)
    shown.append([epoch, len(points), bool(self.fig.canvas.get_tk_widget().winfo_ismapped())])
w.FeatureWindow.show = show
from cli.main import app
try:
    app(prog_name="cl", args=sys.argv[1:])
finally:
    print("SHOWN " + json.dumps(shown))
"""


def test_cl_train_live_window_redraws_each_epoch(display, tmp_path):
    flags = cli_flags(tiny_config(make_data(tmp_path / "data"), epochs=2))
    result = run_python(TRAIN, display, "train", *flags, "--out", str(tmp_path / "r"), "--live-window")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout.split("SHOWN ")[-1])
    assert shown == [[1, 48, True], [2, 96, True]]     # the ring holds the latest 3,072: both epochs
    assert "epoch 2/2" in result.stdout


def test_no_display_is_a_usage_error_before_training(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["PYTHONPATH"] = str(ROOT)
    result = subprocess.run([sys.executable, "-m", "cli", "train", "--live-window", "--out",
                             str(tmp_path / "r")], capture_output=True, text=True, env=env, cwd=ROOT,
                            timeout=120)
    assert result.returncode == 2 and "--live-window needs a display" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "r").exists()
