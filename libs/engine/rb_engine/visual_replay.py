"""Replay of ui_screenshot steps: the recorded images must still be the recorded bytes.

Without `--live`, every artifact a screenshot step recorded (the screenshot, its baseline, the
diff) is read back from the store and hashed: identical bytes are a 0.00% change; a missing or
tampered blob is a deviation that names it. With `--live` the page is captured again and the new
image is compared with the recorded one (pixelmatch, with the step's own thresholds).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rb_engine.artifacts import ArtifactMissing, ArtifactStore, verify
from rb_engine.visual import DEFAULT_MAX_DIFF_RATIO, DEFAULT_THRESHOLD, compare

ROLES = ("screenshot", "baseline", "diff")


@dataclass
class ScreenshotCheck:
    notes: list[tuple[bool, str]] = field(default_factory=list)  # (fine, the line to print)
    # (field, recorded, replayed): what the replay report records as deviations
    problems: list[tuple[str, Any, Any]] = field(default_factory=list)


def verify_recorded(store: ArtifactStore, body: Any) -> ScreenshotCheck:
    """The recorded artifacts of one screenshot step (its result, or its failure's detail)."""
    check = ScreenshotCheck()
    if not isinstance(body, dict):
        return check
    intact = 0
    for role in ROLES:
        ref = body.get(role)
        if not isinstance(ref, dict) or not ref.get("digest"):
            continue
        problem = verify(store, str(ref["digest"]))
        if problem is None:
            intact += 1
        else:
            check.problems.append((f"{role} artifact", ref["digest"], problem))
    if intact and not check.problems:
        check.notes.append(
            (
                True,
                f"Screenshot diff: 0.00% change (within threshold): {intact} stored image(s) "
                "byte-identical to their recorded digests",
            )
        )
    return check


def live_diff(store: ArtifactStore, recorded: Any, replayed: Any, inputs: dict[str, Any]) -> ScreenshotCheck:
    """The page captured again (`replayed`, the step's new result) against the recorded image."""
    check = ScreenshotCheck()
    old = (recorded or {}).get("screenshot") if isinstance(recorded, dict) else None
    if not isinstance(replayed, dict) or "error" in replayed:
        error = replayed.get("error") if isinstance(replayed, dict) else replayed
        check.problems.append(("screenshot (live)", "captured", error))
        return check
    new = replayed.get("screenshot") or {}
    if not isinstance(old, dict) or not old.get("digest"):
        return check
    try:
        before, after = store.get(old["digest"]), store.get(new["digest"])
    except ArtifactMissing as exc:
        check.problems.append(("screenshot (live)", old["digest"], f"artifact {exc} is missing"))
        return check
    comparison = compare(
        before,
        after,
        threshold=float(inputs.get("threshold", DEFAULT_THRESHOLD)),
        max_diff_ratio=float(inputs.get("max_diff_ratio", DEFAULT_MAX_DIFF_RATIO)),
    )
    check.notes.append((comparison.ok, comparison.describe() + " (live, against the recorded image)"))
    if not comparison.ok:
        check.problems.append(("screenshot (live)", old["digest"], comparison.describe()))
    return check
