"""The ``privlab`` command line: one subcommand (or group) per pillar, see ``privlab --help``."""
