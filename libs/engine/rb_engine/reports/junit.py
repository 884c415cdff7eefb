"""`rb test --junit FILE`: one <testsuite> per run, one <testcase> per scenario.

A scenario with a failed check is a <failure> whose message lists the failed checks; every
check and screenshot line is in <system-out>, as `rb test` printed it.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from rb_engine.testing import TestOutcome


def junit_xml(suite: str, outcomes: list[TestOutcome]) -> bytes:
    failures = sum(not o.passed for o in outcomes)
    total_time = sum(o.seconds for o in outcomes)
    suites = ET.Element("testsuites", name="rb test", tests=str(len(outcomes)), failures=str(failures))
    element = ET.SubElement(
        suites,
        "testsuite",
        name=suite,
        tests=str(len(outcomes)),
        failures=str(failures),
        errors="0",
        skipped="0",
        time=f"{total_time:.3f}",
    )
    for outcome in outcomes:
        case = ET.SubElement(
            element, "testcase", classname=suite, name=outcome.name, time=f"{outcome.seconds:.3f}"
        )
        failed = [c for c in outcome.checks if not c.ok]
        if failed:
            failure = ET.SubElement(
                case,
                "failure",
                message="; ".join(c.label for c in failed)[:1000],
                type="rb.check",
            )
            failure.text = "\n".join(f"{c.label}: {c.detail}" if c.detail else c.label for c in failed)
        lines = [f"execution {outcome.execution_id}"]
        lines += [f"{'✓' if c.ok else '✗'} {c.label}" + (f" — {c.detail}" if c.detail else "") for c in outcome.checks]
        lines += [f"{'✓' if s.ok else '✗'} {s.step_id}: {s.summary}" for s in outcome.screenshots]
        ET.SubElement(case, "system-out").text = "\n".join(lines)
    ET.indent(suites)
    return ET.tostring(suites, encoding="utf-8", xml_declaration=True) + b"\n"


def write_junit(path: Path, suite: str, outcomes: list[TestOutcome]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(junit_xml(suite, outcomes))
