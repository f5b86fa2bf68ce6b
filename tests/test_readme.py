"""The README's runnable blocks, run as written: the five walkthroughs and "Checking your own
converter".

Each block runs in a fresh temporary directory with this environment's ``python`` and
``equivalence`` first on PATH. A walkthrough passes when it exits 0, every ``--verify`` in it
prints ``verify: PASSED``, every difference it prints is within ``FLOAT32_HONEST``, and what the
README says it shows (a refusal, a NeoML check) is in its output. The README's "Measured:"
figures come from these runs.

Scenario 4 ends in the NeoML environment (``.venv-neoml``, which ``.ci/run`` builds before the
suite). Without it that test skips with the reason; ``EQUIVALENCE_REQUIRE_NEOML_ENV=1`` (CI)
makes the skip a failure.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.cpu

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
NEOML_ENV = ROOT / ".venv-neoml"

# The walkthroughs run float32 networks of at most 2 x 512 units over 100 steps: an honest
# conversion differs by float32 rounding, 1e-8 to 1e-6 here; one wrong gate, bias or transpose
# gives 1e-2 or more. The bound sits between the two, with room for other CPUs' rounding.
FLOAT32_HONEST = 1e-5

# What each walkthrough's prose says its output shows, beyond verified conversions.
CLAIMS = {
    "3": ["keras cannot represent projection", "exit status 2"],
    "4": ["neoml vs keras", "-> OK"],
    "5": ["compare: EQUIVALENT (6 of 6 probes matched)", "refused: time 1, shorter time, "
          "longer time, larger batch"],
}

NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?(?![\w.])")


def walkthroughs() -> dict[str, str]:
    """The ``### N. title`` walkthroughs' bash blocks, by N."""
    found = re.findall(r"^### (\d+)\. [^\n]*\n(?:(?!^#)[^\n]*\n)*?```bash\n(.*?)```",
                       README, re.S | re.M)
    return dict(found)


def block_after(heading: str, language: str) -> str:
    """The first ``language`` block after the README heading ``heading``."""
    section = README.split(f"\n{heading}\n", 1)[1]
    return re.search(rf"```{language}\n(.*?)```", section, re.S).group(1)


def printed_differences(output: str) -> list[float]:
    """Every difference a block printed: the numbers after "max abs diff" on each line, up
    to the line's first ';' (after it come the allowed tolerances), and after its last ':'
    when the line labels them ("max abs diff, Keras 3 vs tf_keras: 0.0")."""
    figures = []
    for line in output.splitlines():
        if "max abs diff" not in line:
            continue
        segment = line.split("max abs diff", 1)[1].split(";", 1)[0]
        segment = segment.rsplit(":", 1)[-1]
        figures.extend(float(number) for number in NUMBER.findall(segment))
    return figures


def run_block(command: list[str], script: str, folder: Path) -> subprocess.CompletedProcess:
    if NEOML_ENV.exists():
        (folder / ".venv-neoml").symlink_to(NEOML_ENV)
    environment = dict(os.environ, PYTHONPATH=str(ROOT),
                       PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    return subprocess.run([*command, script], cwd=folder, env=environment, text=True,
                          capture_output=True, timeout=600)


def require_neoml_env() -> None:
    if NEOML_ENV.exists():
        return
    reason = f"no NeoML environment at {NEOML_ENV} (bash .ci/run builds it)"
    if os.environ.get("EQUIVALENCE_REQUIRE_NEOML_ENV") == "1":
        pytest.fail(f"EQUIVALENCE_REQUIRE_NEOML_ENV=1 but {reason}")
    pytest.skip(reason)


def test_the_readme_has_its_five_walkthroughs() -> None:
    assert sorted(walkthroughs()) == ["1", "2", "3", "4", "5"]


@pytest.mark.parametrize("number", sorted(walkthroughs()))
def test_walkthrough_runs_as_written(number: str, tmp_path: Path) -> None:
    script = walkthroughs()[number]
    if ".venv-neoml" in script:
        require_neoml_env()
    done = run_block(["bash", "-euo", "pipefail", "-c"], script, tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"walkthrough {number} exited {done.returncode}:\n{output}"
    assert output.count("verify: PASSED") == script.count("--verify"), output
    figures = printed_differences(output)
    assert len(figures) >= script.count("max abs diff"), output
    assert max(figures) <= FLOAT32_HONEST, f"walkthrough {number}: {figures}\n{output}"
    for claim in CLAIMS.get(number, []):
        assert claim in output, f"walkthrough {number} does not show {claim!r}:\n{output}"


def _run_converter_block(heading: str, pair: str, examples: int, tmp_path: Path) -> None:
    """Run the python block after ``heading``; it must print ``pair``'s verdict over
    ``examples`` examples within the honest float32 bound."""
    script = block_after(heading, "python")
    done = run_block([sys.executable, "-c"], script, tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    verdict = re.search(rf"{re.escape(pair)}: equivalent over (\d+) examples "
                        r"\(max abs diff (\S+)\)", output)
    assert verdict, output
    assert int(verdict.group(1)) == examples
    assert float(verdict.group(2)) <= FLOAT32_HONEST


def test_checking_your_own_converter_runs_as_written(tmp_path: Path) -> None:
    _run_converter_block("## Checking your own converter", "torch -> keras", 50, tmp_path)


def test_the_gru_converter_check_runs_as_written(tmp_path: Path) -> None:
    _run_converter_block("## Cells: LSTM and GRU", "keras -> torch", 25, tmp_path)


def test_printed_differences_reads_every_figure_and_no_tolerance() -> None:
    output = ("[1/3] batch=2 steps=5: max abs diff output 1e-07, h 0, c 2.5e-08; allowed "
              "atol=2.24e-05\nmax abs diff, Keras 3 vs tf_keras: 0.0\n"
              "h layer 0: max abs diff 0.3\nmax abs diff, ONNX output, h_n, c_n: 1 2e-3 4\n")
    assert printed_differences(output) == [1e-07, 0.0, 2.5e-08, 0.0, 0.3, 1.0, 2e-3, 4.0]


def test_the_layout_lists_every_module() -> None:
    """Every module of the package, and every folder, has its line in the README's Layout."""
    block = README.split("\n## Layout\n", 1)[1].split("```", 2)[1]
    listed, folder = set(), ""
    for line in block.splitlines():
        if line.startswith("equivalence/"):
            folder = line.split()[0]
            listed.add(folder)
        elif line.startswith("  ") and line.split():
            listed.add(folder + line.split()[0])
    package = ROOT / "equivalence"
    modules = {f"{p.parent.relative_to(ROOT).as_posix()}/" + ("" if p.name == "__init__.py"
                                                               else p.name)
               for p in package.rglob("*.py")}
    assert modules - listed == set(), "modules missing from the README's Layout"
    assert listed - modules == set(), "the README's Layout names modules that do not exist"
