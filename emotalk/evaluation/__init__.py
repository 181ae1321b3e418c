"""Evaluation of an identity: image, lip, sync and emotion metrics, and the report."""
