"""pixelmatch comparison on images drawn here: ratios, thresholds, sizes, masks, anti-aliasing."""

from __future__ import annotations

import io

from PIL import Image, ImageDraw

from rb_engine.visual import MASK_COLOUR, compare, image_size


def png(size: tuple[int, int] = (100, 100), box: tuple[int, int, int, int] | None = None, fill: str = "#000") -> bytes:
    image = Image.new("RGB", size, "#fff")
    if box:
        ImageDraw.Draw(image).rectangle(box, fill=fill)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def test_identical_images_do_not_differ() -> None:
    result = compare(png(box=(10, 10, 20, 20)), png(box=(10, 10, 20, 20)))
    assert result.changed == 0 and result.ok and result.describe() == "Screenshot diff: 0.00% change (within threshold)"
    assert image_size(result.diff_png or b"") == (100, 100)


def test_a_changed_region_over_one_percent_fails_with_its_ratio() -> None:
    result = compare(png(), png(box=(0, 0, 9, 19)))  # 10x20 = 200 of 10000 pixels
    assert result.changed == 200 and abs(result.ratio - 0.02) < 1e-9
    assert not result.ok and result.describe() == "Screenshot diff: 2.00% change (over the 1.00% threshold)"
    assert compare(png(), png(box=(0, 0, 9, 19)), max_diff_ratio=0.05).ok


def test_threshold_is_the_per_pixel_colour_distance() -> None:
    faint = png(box=(0, 0, 49, 49), fill="#f4f4f4")
    assert compare(png(), faint).changed == 0  # below the default 0.1
    assert compare(png(), faint, threshold=0.01).changed == 2500


def test_another_size_is_a_failure_of_its_own() -> None:
    result = compare(png((100, 100)), png((100, 120)))
    assert not result.ok and result.size_mismatch == "baseline 100x100, new 100x120"
    assert result.describe() == "Screenshot size changed: baseline 100x100, new 100x120"


def test_masked_pixels_in_either_image_never_count() -> None:
    before = png(box=(10, 10, 30, 20), fill=MASK_COLOUR)
    after = png(box=(10, 10, 60, 40), fill=MASK_COLOUR)  # the masked clock grew
    assert compare(before, after).changed == 0
    assert compare(png(box=(10, 10, 30, 20), fill="#00f"), png(box=(10, 10, 60, 40), fill="#00f")).changed > 0


def test_the_step_spec_checks_actions_viewport_and_ratios() -> None:
    from rb_common.step_specs import SPECS

    spec = SPECS["ui_screenshot"]
    ok = {
        "url": "http://x/",
        "selector": "#a",
        "viewport": {"width": 800, "height": 600},
        "wait_for": "networkidle",
        "mask": ["#clock"],
        "actions": [{"click": "#b"}, {"fill": "#q", "value": "v"}, {"press": "Enter"}, {"wait": "#r"}],
        "timeout": "10s",
        "max_diff_ratio": 0.02,
        "threshold": 0.2,
    }
    assert spec.check(ok) == []
    assert spec.check({**ok, "actions": [{"hover": "#b"}]})
    assert spec.check({**ok, "actions": [{"fill": "#q"}]})  # fill needs a value
    assert spec.check({**ok, "viewport": {"width": 0}})
    assert spec.check({**ok, "max_diff_ratio": 2})
    assert spec.check({**ok, "timeout": "soon"})
    assert spec.check({"selector": "#a"}) == ["missing required input 'url'"]
