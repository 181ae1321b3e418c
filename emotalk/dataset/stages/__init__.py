"""The stages of building a dataset: clip checks, crop, background plate, compact storage."""
