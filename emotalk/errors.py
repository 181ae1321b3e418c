"""User-facing error types: each message says what was wrong with the input and what to do."""

from __future__ import annotations


class EmoTalkError(Exception):
    """Base of every error a user should read (CLI prints it without a traceback; the app shows it)."""


class InputError(EmoTalkError, ValueError):
    """The user's input (text, numbers, options) is not usable."""


class MediaError(EmoTalkError):
    """A video or audio file cannot be used: corrupt, unsupported, too long, missing a stream, ..."""


class AssetError(EmoTalkError):
    """A model file is missing or corrupt; the message names the asset and the command that fetches it."""


class DatasetError(EmoTalkError):
    """An identity dataset or checkpoint is missing, of another format version, or inconsistent."""
