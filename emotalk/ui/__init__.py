"""The Gradio app's side of EmoTalk: handlers (widget values -> pipeline requests), the fine-tune bridge,
messages, serving settings, the valence-arousal pad, plots and thumbnails. app.py lays them out."""
