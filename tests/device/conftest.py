import pytest

from centerloss.device import compile_rule


@pytest.fixture
def blocks_pay(monkeypatch):
    """A machine where compiling in blocks pays between eager and whole: the AMX Xeon's figures
    before the eager model pooled first (docs/performance.md)."""
    monkeypatch.setitem(compile_rule.SAVED_SHARE, "lenetspp", 0.23)
    monkeypatch.setitem(compile_rule.BLOCKS_SAVED_SHARE, "lenetspp", 0.19)
