"""The command line a newcomer meets: --version, help with quoted examples, aliases, folders,
no framework logs on the console.

Real runs of ``equivalence`` (a subprocess for the top-level parser, in-process for convert),
on a torch file written by torch itself.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from equivalence.cli.files import ALIASES, family_name
from equivalence.files.registry import TO_CHOICES
from tests.file_helpers import run_cli

pytestmark = pytest.mark.cpu


def _equivalence(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "equivalence", *argv], capture_output=True,
                          text=True, timeout=120, check=False)


def test_version_names_the_installed_package() -> None:
    from importlib.metadata import version

    done = _equivalence("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"equivalence {version('equivalence')}"


def test_help_says_what_the_tool_is_and_quotes_every_pair() -> None:
    shown = _equivalence("--help").stdout + _equivalence("report", "--help").stdout
    assert "Prove numerically that an LSTM" in shown and "examples:" in shown
    assert "``" not in shown  # no reST from a docstring
    for word in shown.split():
        if "->" in word:  # torch->keras unquoted is a shell redirect into a file "keras"
            assert word.startswith("'"), word


@pytest.mark.parametrize("alias", sorted(ALIASES))
def test_aliases_name_real_families(alias: str) -> None:
    assert family_name(alias.upper()) in (*TO_CHOICES, "cudnn")


@pytest.fixture
def torch_file(tmp_path: Path) -> Path:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    path = tmp_path / "lstm.pt"
    torch.save(torch.nn.LSTM(3, 4).state_dict(), path)
    return path


def test_convert_takes_an_alias_and_makes_the_missing_folder(capsys, torch_file: Path) -> None:
    output = torch_file.parent / "new" / "deeper" / "lstm.onnx"
    code, _, err = run_cli(capsys, "convert", torch_file, "--to", "ONNX", "-o", output)
    assert code == 0, err
    assert output.is_file()
    code, _, err = run_cli(capsys, "convert", torch_file, "--to", "pytorch",
                             "-o", output.with_suffix(".pt"))
    assert code == 0 and output.with_suffix(".pt").is_file(), err


def test_a_failed_convert_leaves_no_folder_it_made(capsys, torch_file: Path) -> None:
    output = torch_file.parent / "made" / "lstm.pt"
    code, _, err = run_cli(capsys, "convert", torch_file, "--to", "torch", "-o", output,
                           "--layer", "no-such-layer")
    assert code == 2 and "Traceback" not in err
    assert not (torch_file.parent / "made").exists()


def test_an_output_under_a_file_is_refused(capsys, torch_file: Path) -> None:
    code, _, err = run_cli(capsys, "convert", torch_file, "--to", "onnx",
                           "-o", torch_file / "sub" / "x.onnx")
    assert code == 2 and "is not a folder" in err


# What writes to file descriptor 2 itself, as TensorFlow's C++ logs do, and a line of ours.
_LOGGING_BODY = """
import argparse, os, sys
from equivalence.cli.files import _guarded

def body(args):
    os.write(2, b"I0000 port.cc:153] oneDNN custom operations are on\\n")
    print("equivalence inspect: error: our own line", file=sys.stderr)
    return 0

sys.exit(_guarded("inspect", argparse.Namespace(debug=sys.argv[1] == "debug"), body))
"""


@pytest.mark.parametrize("debug", [False, True])
def test_framework_logs_stay_off_the_console_unless_debug(debug: bool) -> None:
    done = subprocess.run([sys.executable, "-c", _LOGGING_BODY, "debug" if debug else "-"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    ours = "equivalence inspect: error: our own line\n"
    assert done.stderr == ("I0000 port.cc:153] oneDNN custom operations are on\n" + ours
                           if debug else ours)


def test_a_convert_that_imports_tensorflow_prints_nothing_on_stderr(torch_file: Path) -> None:
    """Keras 3 imports TensorFlow, whose C++ start-up logs (oneDNN, CUDA) bypass its levels."""
    output = torch_file.with_suffix(".keras")
    done = _equivalence("convert", str(torch_file), "--to", "keras", "-o", str(output))
    assert done.returncode == 0 and output.is_file(), done.stderr
    assert done.stderr == ""
    again = _equivalence("convert", str(torch_file), "--to", "keras", "-o", str(output))
    assert again.returncode == 2 and again.stderr.count("\n") == 1, again.stderr
    assert "exists" in again.stderr
