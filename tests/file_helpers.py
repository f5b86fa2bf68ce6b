"""What the real-file test modules share: running the CLI in-process, and its leftovers."""

from __future__ import annotations

import argparse
from pathlib import Path

from equivalence.cli import files as cli


def run_cli(capsys, *argv: object) -> tuple[int, str, str]:
    """Run ``equivalence inspect/convert`` in this process; (exit status, stdout, stderr)."""
    parser = argparse.ArgumentParser(prog="equivalence")
    cli.add_arguments(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args([str(a) for a in argv])
    code = args.func(args)
    out, err = capsys.readouterr()
    return code, out, err


def leftovers(folder: Path) -> list[str]:
    """Temporary files or folders a run left at any name in ``folder``."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".tmp-"))


def one_error_line(err: str, path: Path) -> bool:
    """An error is exactly one line, names the file, and shows no traceback."""
    lines = [line for line in err.splitlines() if line.strip()]
    return (len(lines) == 1 and "error:" in lines[0] and str(path) in lines[0]
            and "Traceback" not in err)
