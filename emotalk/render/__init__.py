"""Frames of an identity: speech code + emotion + camera -> images (frames.py, camera.py), the label burnt
into them (label.py), an upload's own sound under them (soundtrack.py), and how long that takes (speed.py)."""
