"""The pytest plugin, used as a user would: a project outside this repository, run by pytest.

The project is a temporary folder with its own test file: ``assert_conversion`` on a
correct converter and on a buggy one (i and f gate blocks swapped, which must fail).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from equivalence.report import pytest_plugin

pytestmark = pytest.mark.cpu

USER_TESTS = '''
import equivalence


def faithful(weights):
    return weights


def gates_swapped(weights):
    out = dict(weights)
    for name, value in weights.items():
        if name.startswith("weight_ih"):
            n = value.shape[0] // 4
            out[name] = value[[*range(n, 2 * n), *range(n), *range(2 * n, 4 * n)]]
    return out


def test_faithful():
    equivalence.assert_conversion(faithful, source="torch", target="torch", max_examples=5)


def test_gates_swapped():
    equivalence.assert_conversion(gates_swapped, source="torch", target="torch",
                                  max_examples=5)
'''


@pytest.fixture(scope="module")
def user_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    project = tmp_path_factory.mktemp("user_project")
    (project / "pytest.ini").write_text("[pytest]\n")  # its own root, not this repository's
    (project / "test_converter.py").write_text(USER_TESTS)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "HYPOTHESIS"))}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist",
         "--equivalence-results", "results.json", "--junitxml", "junit.xml", "test_converter.py"],
        cwd=project, env=env, capture_output=True, text=True, timeout=300,
    )
    return {"done": done, "project": project}


def test_the_run_fails_only_on_the_buggy_converter(user_run: dict) -> None:
    done = user_run["done"]
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 failed, 1 passed" in done.stdout


def test_header_names_the_runtimes_installed_here(user_run: dict) -> None:
    line = next(x for x in user_run["done"].stdout.splitlines()
                if x.startswith("equivalence runtimes installed here:"))
    installed = line.split(":", 1)[1].split(" (GPU rows")[0]
    assert "torch" in [name.strip() for name in installed.split(",")]


def test_failure_shows_the_verdict_not_the_harness_frames(user_run: dict) -> None:
    out = user_run["done"].stdout
    failure = out[out.index("test_gates_swapped"):]
    assert "AssertionError: torch -> torch: NOT equivalent" in failure
    assert "diagnosis:" in failure
    for harness in ("equivalence/harness/check.py", "def assert_conversion", "check_conversion(fn"):
        assert harness not in failure


def test_results_file_has_both_checks(user_run: dict) -> None:
    data = json.loads((user_run["project"] / "results.json").read_text())
    pairs = sorted((p["source"], p["target"], p["passed"]) for p in data["pairs"])
    assert pairs == [("torch", "torch", False), ("torch", "torch", True)]
    assert all(p["examples"] >= 1 and p["environment"] == "pytest" for p in data["pairs"])


def test_junit_xml_carries_the_verdicts(user_run: dict) -> None:
    root = ET.parse(user_run["project"] / "junit.xml").getroot()
    cases = {case.get("name"): case for case in root.iter("testcase")}
    verdicts = {name: [p.get("value") for p in case.iter("property")
                       if p.get("name") == pytest_plugin.VERDICT]
                for name, case in cases.items()}
    assert verdicts["test_faithful"][0].startswith("torch -> torch: passed over")
    assert verdicts["test_gates_swapped"][0].startswith("torch -> torch: FAILED over")
    message = cases["test_gates_swapped"].find("failure").get("message")
    assert "NOT equivalent" in message


def test_header_needs_no_framework_import() -> None:
    script = ("import sys; from equivalence.report import pytest_plugin as p; "
              "p.installed_runtimes(); "
              "print([m for m in ('torch', 'tensorflow', 'jax') if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, check=True, cwd=Path(__file__).parent)
    assert done.stdout.strip() == "[]"
