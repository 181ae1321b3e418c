"""UI-only helpers: the valence-arousal pad's value format, presets, plots and thumbnails."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from emotalk.emotion import CATEGORIES
from emotalk.errors import InputError
from emotalk.ui import pad, plots, thumbs
from emotalk.ui.presets import PRESETS


def test_pad_value_round_trip_and_clamping():
    assert pad.format_va(0.8, 0.5) == "0.80,0.50"
    assert pad.format_va(2, -3) == "1.00,-1.00"
    assert pad.parse_va("0.25,-0.75") == (0.25, -0.75)
    assert pad.parse_va("5,0") == (1.0, 0.0)
    for bad in (None, "", "x,y", "1", "1,2,3"):
        assert pad.parse_va(bad) == (0.0, 0.0)


def test_presets_are_the_shared_category_coordinates():
    assert set(PRESETS) == {"neutral", "happy", "sad", "angry", "surprised", "calm", "fear"}
    for name, va in PRESETS.items():
        assert va == CATEGORIES[name]
    assert pad.preset_js("sad") == "() => [-0.7, -0.45, '-0.70,-0.45']"


def test_pad_component_carries_clickable_preset_chips_and_pick_event():
    comp = pad.va_pad(elem_id="p")
    assert comp.value == "0.00,0.00" and comp.elem_id == "p"
    for name, (v, a) in PRESETS.items():  # each chip sits at its coordinates and carries its value
        assert (f'style="left:{(v + 1) * 50:.1f}%;top:{(1 - a) * 50:.1f}%" data-va="{pad.format_va(v, a)}"'
                in comp.html_template)
        assert f'<span class="va-name">{name}</span></button>' in comp.html_template
    assert set(pad.LABEL_SIDE) == set(PRESETS) and pad.LABEL_SIDE["neutral"] == "below"  # clear of the knob
    assert pad.LABEL_SIDE["fear"] != pad.LABEL_SIDE["angry"]  # the two closest presets face apart
    assert "trigger('pick')" in comp.js_on_load and "<!--LABELS-->" not in comp.html_template
    assert "closest('.va-cat')" in comp.js_on_load  # a chip click sets exactly its preset
    assert callable(comp.pick)  # the custom event exists for wiring


def test_track_figure_shows_keyframes_or_the_constant_emotion():
    fig = plots.emotion_track_figure([(0, -0.5, 0.2), (2.0, 0.8, 0.5)])
    vl, al, vk, ak = fig.axes[0].lines
    assert list(vk.get_xdata()) == [0, 2.0] and list(vk.get_ydata()) == pytest.approx([-0.5, 0.8])
    assert list(ak.get_ydata()) == pytest.approx([0.2, 0.5])
    t, v = vl.get_xdata(), vl.get_ydata()  # eased: flat at the keyframes, halfway at the middle
    assert v[0] == pytest.approx(-0.5) and v[-1] == pytest.approx(0.8)
    mid = abs(t - 1.0).argmin()
    assert v[mid] == pytest.approx(0.15, abs=0.03)
    with pytest.raises(InputError, match="share the time"):
        plots.emotion_track_figure([(1, 0, 0), (1, 0.5, 0.5)])
    const = plots.emotion_track_figure(None, 0.3, -0.4)
    assert [ln.get_ydata()[0] for ln in const.axes[0].lines] == [0.3, -0.4]


@pytest.mark.parametrize("hist, log", [([1.0, 0.5, 0.2], False), ([10.0, 1.0, 0.01], True), ([], False)])
def test_loss_figure_scale(hist, log):
    ax = plots.loss_figure(hist).axes[0]
    assert (ax.get_yscale() == "log") == log
    assert len(ax.lines) == (1 if hist else 0)


def test_thumbnails_real_or_placeholder(tmp_path):
    real = tmp_path / "t.png"
    Image.new("RGB", (4, 4)).save(real)
    copied = Path(thumbs.thumbnail_for("x", real))
    # a copy in the UI cache (user identity folders are not served), same bytes
    assert copied != real and copied.parent == thumbs._CACHE and copied.read_bytes() == real.read_bytes()
    a, b = thumbs.thumbnail_for("alice", None), thumbs.thumbnail_for("bob", tmp_path / "missing.png")
    assert a != b and Image.open(a).size == (128, 128) and Path(b).is_file()
    assert thumbs.thumbnail_for("alice", None) == a
