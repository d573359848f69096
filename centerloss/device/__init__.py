"""Where and how a command runs: the device, the precision, the distributed context, and the
speed settings that depend on them."""
