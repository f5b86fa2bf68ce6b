"""float32 in every check: the cases the ci suite and the report really draw.

float32 is what people ship. Each check (a runtime against the reference, an
ordered pair) that claims float32 must judge it in at least a third of its
examples, with the ci profile's shared draws (tests/test_equivalence.py) and
with the report's (equivalence.report.matrix, seed 0, 25 examples). The draws
depend only on the dtypes a check claims (every choice is drawn, then masked),
so one probe per distinct dtype set covers every check.
"""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from equivalence import table
from equivalence.compare import Comparison, Tolerance
from equivalence.harness.explore import explore
from equivalence.harness.judge import Outcome
from equivalence.profiles import EXAMPLES, register
from equivalence.report.matrix import cases as report_cases
from equivalence.report.matrix import checks
from equivalence.strategies import Capabilities, joint_capabilities, lstm_cases
from tests.test_equivalence import CASE_SEED, PAIRS

pytestmark = pytest.mark.cpu
SHARE = 1 / 3
EVERY = frozenset({"float16", "bfloat16", "float32", "float64"})


def ci_checks() -> dict[str, Capabilities]:
    """Every check of tests/test_equivalence.py and the capabilities it draws with."""
    claimed = {f"{e.name}->reference": e.capabilities for e in table.entries()}
    # the LSTM checks; a GRU check draws its dtype from the same wide integer
    for a, b, cell in PAIRS:
        if cell == "lstm":
            claimed[f"{a.name}->{b.name}"] = joint_capabilities([a.capabilities,
                                                                 b.capabilities])
    return claimed


def ci_draws(caps: Capabilities) -> Counter:
    """The dtypes test_equivalence's checks draw under the ci profile with its shared seed."""
    register()
    drawn: Counter = Counter()
    strategy = lstm_cases(capabilities=caps, dtypes=caps.dtypes)

    @seed(CASE_SEED)
    @settings(settings.get_profile("ci"), suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def probe(data) -> None:
        drawn[data.draw(strategy, label="case").spec.dtype] += 1

    probe()
    return drawn


def report_draws(source: str, target: str, cell: str = "lstm") -> Counter:
    """The dtypes the report's cell for (source, target) judges, through explore itself."""
    drawn: Counter = Counter()

    def judge(case) -> Outcome:
        drawn[case.spec.dtype] += 1
        return Outcome("draw", case, Comparison((), Tolerance(0.0, 0.0)))

    explore(report_cases(source, target, cell), judge, max_examples=EXAMPLES["ci"], seed_value=0)
    return drawn


def assert_float32_share(name: str, drawn: Counter, claimed: frozenset[str]) -> None:
    total = sum(drawn.values())
    assert total > 0, f"{name}: no examples drawn"
    if "float32" in claimed:
        assert drawn["float32"] >= SHARE * total, f"{name}: float32 {drawn['float32']}/{total}"
    assert set(drawn) <= claimed, f"{name}: drew {sorted(drawn)}, claims {sorted(claimed)}"


def test_every_ci_check_judges_float32_in_a_third_of_its_examples() -> None:
    claimed = ci_checks()
    by_caps = {caps: ci_draws(caps) for caps in set(claimed.values())}
    for name, caps in claimed.items():
        assert_float32_share(name, by_caps[caps], caps.dtypes)
    # the pairs that claim every float dtype still judge the others too
    every = [drawn for caps, drawn in by_caps.items() if caps.dtypes == EVERY]
    assert every and all(set(drawn) == EVERY for drawn in every), every


def test_every_report_check_judges_float32_in_a_third_of_its_examples() -> None:
    seen: dict[tuple[Capabilities, str], Counter] = {}
    for source, target, cell in checks():
        rows = [table.entry(source)] + ([] if target == "reference" else [table.entry(target)])
        caps = joint_capabilities([r.capabilities for r in rows])
        key = (caps, cell)
        if key not in seen:  # checks with the same capabilities draw the same cases
            seen[key] = report_draws(source, target, cell)
        assert_float32_share(f"{source}->{target}[{cell}]", seen[key], caps.dtypes)


def test_a_check_short_of_float32_fails() -> None:
    """What the committed report had: a pair claiming every float dtype, none of them float32."""
    with pytest.raises(AssertionError, match="float32 0/25"):
        assert_float32_share("torch->keras", Counter(float16=12, bfloat16=9, float64=4), EVERY)
    with pytest.raises(AssertionError, match="float32 8/25"):
        assert_float32_share("torch->keras", Counter(float32=8, float16=17), EVERY)
    with pytest.raises(AssertionError, match="claims"):
        assert_float32_share("tf1->reference", Counter(float32=20, float16=5),
                             frozenset({"float32", "float64"}))


def test_ci_judges_every_example_as_drawn() -> None:
    """No target phase in ci: it would replace half the draws with mutations of the worst."""
    register()
    assert Phase.target not in settings.get_profile("ci").phases
