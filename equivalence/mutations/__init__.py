"""The mutation self-test: realistic conversion bugs the harness must catch and name."""
