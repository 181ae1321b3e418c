"""A clip becomes an identity dataset folder (build), and that folder is read back (format)."""
