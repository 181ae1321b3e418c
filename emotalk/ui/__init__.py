"""UI-only helpers for the Gradio app: the valence-arousal pad, plots and small formatting helpers."""
