"""Modal's `modal.volume` module: the Volume class and what its listdir
returns."""
from ._volume import FileEntry, FileEntryType, Volume

__all__ = ["FileEntry", "FileEntryType", "Volume"]
