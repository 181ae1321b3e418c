"""A clip becomes an identity dataset folder (build: prepare -> parse -> finish), read back by format."""
