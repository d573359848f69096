"""What the tests share: generated data, tiny runs, the one-line-error check."""
