"""The ``equivalence`` command line: every subcommand's argument handling."""
