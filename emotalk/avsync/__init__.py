"""Audio-visual sync of any face video: mouth opening, speech signals, offsets and their confidence."""
