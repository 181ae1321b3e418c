"""A 2-D valence-arousal pad as a Gradio 6 custom `gr.HTML` component (click, drag or arrow keys).

Its value is the string "valence,arousal" (two decimals). It fires a custom `pick` event only on
user input, so the app can mirror it into the two sliders (the canonical inputs) without loops.
Markup, style and behaviour are in pad.html, pad.css and pad.js beside this file.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from emotalk.ui.presets import PRESETS

_HERE = Path(__file__).parent


def format_va(valence: float, arousal: float) -> str:
    """The pad's value for a (valence, arousal), clamped to [-1, 1]."""
    v = min(1.0, max(-1.0, float(valence)))
    a = min(1.0, max(-1.0, float(arousal)))
    return f"{v:.2f},{a:.2f}"


def parse_va(value: str | None) -> tuple[float, float]:
    """(valence, arousal) from the pad's value; (0, 0) for an empty or malformed value."""
    try:
        v, a = (float(x) for x in str(value).split(","))
    except (TypeError, ValueError):
        return 0.0, 0.0
    return min(1.0, max(-1.0, v)), min(1.0, max(-1.0, a))


# where each preset's label sits beside its marker, so close presets (fear, angry) don't overlap, the
# axis words stay clear and the knob, resting at the centre, never covers "neutral"
LABEL_SIDE = {"neutral": "below", "happy": "above", "surprised": "right", "fear": "above", "angry": "left",
              "sad": "below", "calm": "below"}


def _labels_html() -> str:
    """A marker at each preset's circumplex coordinates with a clickable chip (its name) beside it."""
    out = []
    for name, (v, a) in PRESETS.items():
        x, y = (v + 1) * 50, (1 - a) * 50
        out.append(f'<button type="button" class="va-cat va-s-{LABEL_SIDE.get(name, "above")}" '
                   f'style="left:{x:.1f}%;top:{y:.1f}%" data-va="{format_va(v, a)}" '
                   f'title="{name}: valence {v:+.2f}, arousal {a:+.2f}"><i class="va-mark"></i>'
                   f'<span class="va-name">{name}</span></button>')
    return "".join(out)


def va_pad(value: str = "0.00,0.00", **kwargs) -> gr.HTML:
    """The pad: value "v,a"; its `pick` event fires on user input (click, drag, arrow keys)."""
    template = (_HERE / "pad.html").read_text().replace("<!--LABELS-->", _labels_html())
    return gr.HTML(value=value, html_template=template, css_template=(_HERE / "pad.css").read_text(),
                   js_on_load=(_HERE / "pad.js").read_text(), apply_default_css=False, **kwargs)


# JavaScript for the client-side sync (no server round trip, no queue slot).
PAD_TO_SLIDERS_JS = "(p) => { const [v, a] = String(p).split(',').map(Number); return [v || 0, a || 0]; }"
SLIDERS_TO_PAD_JS = ("(v, a) => { const c = (x) => Math.max(-1, Math.min(1, Number(x) || 0)).toFixed(2);"
                     " return c(v) + ',' + c(a); }")


def preset_js(name: str) -> str:
    """JavaScript that sets the two sliders and the pad to a preset's coordinates."""
    v, a = PRESETS[name]
    return f"() => [{v}, {a}, '{format_va(v, a)}']"
