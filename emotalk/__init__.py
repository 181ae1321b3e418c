"""EmoTalk: emotion-controllable, audio-driven 3D Gaussian Splatting talking heads."""

__version__ = "0.1.0"
