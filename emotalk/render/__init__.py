"""Frames of an identity: speech code + emotion + camera -> images, and the label burnt into them."""
