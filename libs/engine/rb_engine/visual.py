"""Visual comparison: pixelmatch (with its anti-aliasing detection) between two PNG images.

`threshold` is pixelmatch's per-pixel colour distance (0..1, default 0.1); a screenshot whose
share of differing pixels is over `max_diff_ratio` (default 1%) is a regression. Images of
different sizes are not compared: that is a failure of its own.

Masked regions (ui_screenshot's `mask`) are painted `MASK_COLOUR`; a pixel of that colour in
either image never counts, so a masked element that grew or moved (a longer clock text) changes
nothing.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageChops
from pixelmatch.contrib.PIL import pixelmatch

DEFAULT_THRESHOLD = 0.1
DEFAULT_MAX_DIFF_RATIO = 0.01
MASK_COLOUR = "#FF00FF"


@dataclass(frozen=True)
class Comparison:
    changed: int
    total: int
    max_diff_ratio: float
    diff_png: bytes | None = None  # red where pixels differ, over a faded copy of the baseline
    size_mismatch: str | None = None  # "baseline 800x600, new 800x640"

    @property
    def ratio(self) -> float:
        return self.changed / self.total if self.total else 0.0

    @property
    def ok(self) -> bool:
        return self.size_mismatch is None and self.ratio <= self.max_diff_ratio

    def describe(self) -> str:
        """The line `rb test` and `rb replay` print for a screenshot."""
        if self.size_mismatch is not None:
            return f"Screenshot size changed: {self.size_mismatch}"
        verdict = "within threshold" if self.ok else f"over the {self.max_diff_ratio:.2%} threshold"
        return f"Screenshot diff: {self.ratio:.2%} change ({verdict})"


def image_size(png: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(png)) as image:
        return image.size


def _masked(image: Image.Image) -> Image.Image:
    """255 where the pixel is exactly MASK_COLOUR (opaque magenta), else 0 (mode L)."""
    r, g, b, a = image.split()
    on = [
        r.point(lambda v: 255 if v == 255 else 0),
        g.point(lambda v: 255 if v == 0 else 0),
        b.point(lambda v: 255 if v == 255 else 0),
        a.point(lambda v: 255 if v == 255 else 0),
    ]
    out = on[0]
    for channel in on[1:]:
        out = ImageChops.darker(out, channel)
    return out


def compare(
    baseline: bytes,
    new: bytes,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    max_diff_ratio: float = DEFAULT_MAX_DIFF_RATIO,
) -> Comparison:
    with Image.open(io.BytesIO(baseline)) as a_raw, Image.open(io.BytesIO(new)) as b_raw:
        a, b = a_raw.convert("RGBA"), b_raw.convert("RGBA")
    if a.size != b.size:
        mismatch = f"baseline {a.size[0]}x{a.size[1]}, new {b.size[0]}x{b.size[1]}"
        return Comparison(0, a.size[0] * a.size[1], max_diff_ratio, size_mismatch=mismatch)
    masked = ImageChops.lighter(_masked(a), _masked(b))
    b = Image.composite(a, b, masked)  # masked pixels: the baseline's in both
    diff = Image.new("RGBA", a.size)
    changed = pixelmatch(a, b, diff, threshold=threshold, includeAA=False)
    out = io.BytesIO()
    diff.save(out, format="PNG")
    return Comparison(changed, a.size[0] * a.size[1], max_diff_ratio, out.getvalue())


@dataclass(frozen=True)
class BaselineSource:
    """Where `ui_screenshot` finds its baselines under `rb test`: `<directory>/<step>.png` (the
    acceptance pack's `screenshots/`). With `update`, the new screenshot is written there
    instead of being compared. `update_hint` is the command that creates a missing one."""

    directory: Path
    update: bool = False
    update_hint: str = "rb test PACK --update-baselines"

    def path(self, step_id: str) -> Path:
        return self.directory / f"{step_id}.png"
