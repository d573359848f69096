"""The `cl` command line: one thin function per subcommand over the centerloss core."""
