"""Typed errors shared by every command, model and the router.

Each error carries a stable snake_case ``code`` (the contract other tools parse),
the ``path`` it concerns and a one-line human ``message``.
"""
from __future__ import annotations

from pathlib import Path

#: Every error code radroute emits. Codes are stable: add, never rename.
ERROR_CODES: dict[str, str] = {
    "not_found": "the path does not exist",
    "not_dicom": "the file is not DICOM (nor another supported image format)",
    "unsupported_format": "a file format radroute does not read",
    "no_pixel_data": "a DICOM file without Pixel Data (header only, SR, ...)",
    "unsupported_transfer_syntax": "no installed decoder handles this transfer syntax",
    "corrupt_pixel_data": "pixel data is truncated, shorter than declared, or fails to decode",
    "too_large": "declared Rows x Columns x Frames exceeds the memory guard",
    "unreadable": "the file cannot be read (truncated, empty, I/O error, bad header)",
    "not_a_volume": "the input cannot be assembled into a 3-D volume",
    "wrong_modality": "the input's modality does not fit the requested operation",
    "invalid_config": "a configuration or model package is invalid",
    "model_not_found": "no bundled model or package at that name/path",
    "decoder_crashed": "the process decoding this input died (a native decoder crashed); the input was isolated",
    "decoder_timeout": "decoding this input took longer than the time limit; its process was stopped",
    "invalid_header": "the image tags are invalid or contradict the pixel data (sizes, photometric, non-finite values)",
}


class RadrouteError(Exception):
    """Base class of every radroute error; ``code`` is one of :data:`ERROR_CODES`."""

    code: str = "unreadable"

    def __init__(self, message: str, path: str | Path | None = None, code: str | None = None):
        if code is not None:
            self.code = code
        if self.code not in ERROR_CODES:
            raise ValueError(f"unknown error code {self.code!r}")
        self.path = str(path) if path is not None else None
        self.message = " ".join(str(message).split())  # always one line
        super().__init__(f"{self.code}: {self.path + ': ' if self.path else ''}{self.message}")

    def to_dict(self) -> dict[str, str]:
        """The JSON form used in every output: ``{"type": code, "message": ...}``."""
        return {"type": self.code, "message": self.message}


class NotDicomError(RadrouteError):
    code = "not_dicom"


class NoPixelDataError(RadrouteError):
    code = "no_pixel_data"


class UnsupportedTransferSyntaxError(RadrouteError):
    code = "unsupported_transfer_syntax"


class CorruptPixelDataError(RadrouteError):
    code = "corrupt_pixel_data"


class TooLargeError(RadrouteError):
    code = "too_large"


class UnreadableError(RadrouteError):
    code = "unreadable"


class NotAVolumeError(RadrouteError):
    code = "not_a_volume"


class WrongModalityError(RadrouteError):
    code = "wrong_modality"


class DecoderCrashedError(RadrouteError):
    code = "decoder_crashed"


class DecoderTimeoutError(RadrouteError):
    code = "decoder_timeout"


class InvalidHeaderError(RadrouteError):
    code = "invalid_header"


class InvalidConfigError(RadrouteError):
    code = "invalid_config"


class ModelNotFoundError(RadrouteError):
    code = "model_not_found"


def error_dict(exc: BaseException) -> dict[str, str]:
    """Map any exception to the ``{"type", "message"}`` contract (unknown ones become ``unreadable``)."""
    if isinstance(exc, RadrouteError):
        return exc.to_dict()
    return {"type": "unreadable", "message": " ".join(f"{type(exc).__name__}: {exc}".split())}
