"""Stages of turning a talking-head clip into an identity dataset (orchestrated by emotalk.data)."""
