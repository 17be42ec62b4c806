"""The `ride-tf` command line (placeholder until the subcommands land in this change)."""


def main(argv=None):
    raise SystemExit("ride-tf: the command line is not built yet")
