"""Training an identity model from a dataset: settings and presets, the loop, densification, resumable
state, the emotion stage and re-spoken voices."""
