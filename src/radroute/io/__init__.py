"""Reading medical images (DICOM, PNG/JPEG/TIFF, NIfTI, DICOM series) into one normalised form."""
from radroute.io.files import find_files, sniff_format
from radroute.io.reader import iter_images, read_header, read_image, read_volume
from radroute.io.types import Image, Metadata, Volume
from radroute.io.windowing import WINDOW_CHOICES, WINDOW_PRESETS, apply_window, window_array

__all__ = [
    "Image", "Metadata", "Volume", "WINDOW_CHOICES", "WINDOW_PRESETS", "apply_window", "find_files",
    "iter_images", "read_header", "read_image", "read_volume", "sniff_format", "window_array",
]
