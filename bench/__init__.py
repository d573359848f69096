"""Benchmarks of cl against the classic pipeline; run each file as a script from the repository
root (see its docstring). A package only so that one script can use another's helpers."""
