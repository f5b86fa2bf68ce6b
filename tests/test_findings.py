"""The standalone reproducers in ``findings/``: each still reproduces, each finding has one.

Owns the link between ``findings/*.py`` and the expectations they stand for. Every
silently wrong cell of :data:`equivalence.harness.known.KNOWN` still expected with the
versions installed here, and every third-party converter's Known, is declared by
exactly one script: its top-level ``CELLS`` (``(runtime, feature)`` pairs) or
``KNOWN_FAILURES`` (``(converter, signature)`` pairs), read with :mod:`ast` without
running it; so is every exporter's expected Known that is not by design
(``EXPECTED_PROBES``: ``(exporter, configuration, probe)``). Every script runs as a
subprocess of this interpreter and must exit 1 (the bug reproduces); 0 means it was
fixed upstream, so the row's finding (its ``fixed_in``) or the converter's and
``findings/README.md`` must change. A quantization finding declares
``QUANTIZED_PATHS`` (``(path, verdict)`` of its "Quantized LSTMs" row): the path must
be one :mod:`equivalence.quantized` runs, the verdict a finding; every script declares
something.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

from equivalence.converters import CONVERTERS
from equivalence.harness import conformance
from equivalence.harness.known import KNOWN, known_finding
from equivalence.table import BY_NAME

pytestmark = pytest.mark.cpu

FINDINGS = Path(__file__).resolve().parent.parent / "findings"
SCRIPTS = sorted(FINDINGS.glob("*.py"))
# Exports through torch.onnx take ~15 s; every other script ~2 s.
TIMEOUT_S = 120

Key = tuple[str, str]


def declared(script: Path, name: str) -> list[Key]:
    """The script's top-level ``name = [(a, b), ...]`` constant, without running it."""
    for node in ast.parse(script.read_text()).body:
        targets = node.targets if isinstance(node, ast.Assign) else (
            [node.target] if isinstance(node, ast.AnnAssign) else [])
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            return [tuple(pair) for pair in ast.literal_eval(node.value)]
    return []


def coverage(declarations: Mapping[str, Iterable[Key]], expected: Iterable[Key],
             *, out_of_scope: Iterable[Key] = ()) -> list[str]:
    """Problems: an expected key no script or several scripts declare; a declared key that
    is not expected (a stale declaration), unless it is out of scope here."""
    owners: dict[Key, list[str]] = {}
    for script, keys in declarations.items():
        for key in keys:
            owners.setdefault(tuple(key), []).append(script)
    wanted, ignored = set(expected), set(out_of_scope)
    problems = [f"{key}: no script in findings/ declares it"
                for key in sorted(wanted - owners.keys())]
    problems += [f"{key}: declared by several scripts {names}"
                 for key, names in sorted(owners.items()) if len(names) > 1]
    problems += [f"{key}: declared by {names} but not expected (update the script and "
                 "findings/README.md)"
                 for key, names in sorted(owners.items()) if key not in wanted | ignored]
    return problems


def _installed(runtime: str) -> bool:
    row = BY_NAME.get(runtime)
    return row is not None and row.load().unavailable_reason() is None


def known_wrong_cells() -> tuple[set[Key], set[Key]]:
    """(silently wrong cells expected here, KNOWN cells out of scope: runtime not installed)."""
    expected, absent = set(), set()
    for (runtime, feature), known in KNOWN.items():
        if known.verdict != conformance.WRONG:
            continue
        if not _installed(runtime):
            absent.add((runtime, feature))
        elif known_finding(runtime, feature) is not None:
            expected.add((runtime, feature))
    return expected, absent


def known_failures() -> set[Key]:
    return {(converter.name, config.known_failure.signature) for converter in CONVERTERS
            for config in converter.configurations if config.known_failure is not None}


def test_every_known_wrong_cell_has_exactly_one_script() -> None:
    expected, absent = known_wrong_cells()
    assert expected, "known.KNOWN lists no silently wrong cell for the installed runtimes"
    problems = coverage({s.name: declared(s, "CELLS") for s in SCRIPTS}, expected,
                        out_of_scope=absent)
    assert not problems, "\n".join(problems)


def test_every_third_party_known_failure_has_exactly_one_script() -> None:
    problems = coverage({s.name: declared(s, "KNOWN_FAILURES") for s in SCRIPTS},
                        known_failures())
    assert not problems, "\n".join(problems)


def expected_probes() -> tuple[set[tuple[str, ...]], set[tuple[str, ...]]]:
    """(exporter, configuration, probe) of every exporter's expected Known that is not by
    design: (those of exporters that run here, those of exporters that do not)."""
    from equivalence.converters.exporter import EXPORTERS, load_exporter

    here, absent = set(), set()
    for path in EXPORTERS:
        exporter = load_exporter(path)
        keys = {(exporter.name, config, probe)
                for (config, probe), known in exporter.expected.items() if not known.by_design}
        (absent if exporter.unavailable_reason() else here).update(keys)
    return here, absent


def test_every_exporter_expected_failure_has_exactly_one_script() -> None:
    expected, absent = expected_probes()
    assert expected | absent, "no exporter declares an expected Known: nothing is checked"
    problems = coverage({s.name: declared(s, "EXPECTED_PROBES") for s in SCRIPTS}, expected,
                        out_of_scope=absent)
    assert not problems, "\n".join(problems)


DECLARATIONS = ("CELLS", "KNOWN_FAILURES", "EXPECTED_PROBES", "QUANTIZED_PATHS")


def quantized_problems(declarations: Mapping[str, Iterable[Key]]) -> list[str]:
    """Problems with ``QUANTIZED_PATHS`` (``(path, verdict)`` of a "Quantized LSTMs" row):
    a path no quantization path of :mod:`equivalence.quantized` names (its rows carry the
    path's name, or it followed by a form such as "(WHILE loop form)"), or a verdict that is
    not a finding (silently wrong, or did not convert or run)."""
    from equivalence.quantized import FAILED, WRONG, _paths

    names = [name for name, _ in _paths()]
    problems = []
    for script, keys in declarations.items():
        for path, verdict in keys:
            if not any(path == n or path.startswith(f"{n} (") for n in names):
                problems.append(f"{script}: quantized path {path!r} is none of {names}")
            if verdict not in (WRONG, FAILED):
                problems.append(f"{script}: {path!r} verdict {verdict!r} is not a finding")
    return problems


def test_every_script_stands_for_something_and_its_quantized_paths_exist() -> None:
    empty = [s.name for s in SCRIPTS if not any(declared(s, name) for name in DECLARATIONS)]
    assert not empty, f"declare {' or '.join(DECLARATIONS)} in {empty}"
    quantized = {s.name: declared(s, "QUANTIZED_PATHS") for s in SCRIPTS}
    assert any(quantized.values()), "no script declares a quantized path: nothing is checked"
    problems = quantized_problems(quantized)
    assert not problems, "\n".join(problems)


def test_the_quantized_check_fails_for_a_stale_path_or_a_match() -> None:
    problems = quantized_problems({"a.py": [("onnxruntime nothing", "silently wrong"),
                                            ("litert int8 (WHILE loop form)",
                                             "matches its quantization")]})
    assert len(problems) == 2, problems
    assert "quantized path 'onnxruntime nothing' is none of" in problems[0]
    assert "verdict 'matches its quantization' is not a finding" in problems[1]


def test_the_coverage_check_fails_for_a_cell_no_script_declares() -> None:
    expected, _ = known_wrong_cells()
    declarations = {s.name: declared(s, "CELLS") for s in SCRIPTS}
    dropped = next(name for name, cells in declarations.items() if cells)
    lost = declarations.pop(dropped)
    problems = coverage(declarations, expected)
    for cell in lost:
        assert f"{cell}: no script in findings/ declares it" in problems


def test_the_coverage_check_fails_for_a_cell_declared_twice_or_stale() -> None:
    cell, stale = ("tract", "reverse"), ("tract", "not a feature")
    problems = coverage({"a.py": [cell], "b.py": [cell, stale]}, [cell])
    assert f"{cell}: declared by several scripts ['a.py', 'b.py']" in problems
    assert any(p.startswith(f"{stale}: declared by ['b.py'] but not expected") for p in problems)
    assert coverage({"a.py": [cell]}, [cell]) == []


def test_scripts_are_standalone_and_listed_in_the_readme() -> None:
    readme = (FINDINGS / "README.md").read_text()
    for script in SCRIPTS:
        tree = ast.parse(script.read_text())
        imported = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                    for alias in node.names]
        imported += [node.module or "" for node in ast.walk(tree)
                     if isinstance(node, ast.ImportFrom)]
        assert not [m for m in imported if m.split(".")[0] == "equivalence"], script.name
        assert ast.get_docstring(tree), f"{script.name}: no docstring (upstream issue)"
        assert f"`{script.name}`" in readme, f"{script.name} is not in findings/README.md"


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_script_still_reproduces(script: Path) -> None:
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=TIMEOUT_S, cwd=FINDINGS.parent, check=False)
    output = (run.stdout + run.stderr).strip()
    if run.returncode == 2 and run.stdout.startswith("not installed:"):
        pytest.skip(f"{script.name}: {run.stdout.strip()}")
    assert run.returncode != 0, (
        f"{script.name} no longer reproduces (fixed upstream?): update known.KNOWN "
        f"(fixed_in) or the converter's Known, and the table in findings/README.md\n{output}")
    assert run.returncode == 1, f"{script.name} exited {run.returncode}, expected 1\n{output}"
