"""The NeoML file family: NeoML's own network files and the hand-off case files."""
