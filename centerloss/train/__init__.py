"""The training loop and what keeps it safe: the guard, resume, the stop on a signal, the
optimizer and the checks made before anything is written."""
