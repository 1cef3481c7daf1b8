"""Typed errors shared by every feredge layer; only CLI ``main()`` turns them into exit codes."""


class FeredgeError(Exception):
    """Base class: a problem the user can fix, reported without a traceback."""


class LabelError(FeredgeError, ValueError):
    """A label set is empty, duplicated or does not match the data or the model."""


class MetadataError(FeredgeError, ValueError):
    """Model metadata is missing, malformed or of an unknown schema version."""


class ImageError(FeredgeError, ValueError):
    """An image cannot be read or decoded."""


class ModelLoadError(FeredgeError, RuntimeError):
    """A model file is missing, corrupt or cannot be run by any installed interpreter."""


class DataError(FeredgeError, ValueError):
    """A data set is empty, malformed or does not match the requested label set."""


class VideoError(FeredgeError, RuntimeError):
    """A video source (file, camera or stream) cannot be opened or written."""


class OptionError(FeredgeError, ValueError):
    """An option or argument is out of range or unknown (0 threads, a negative face size, a bad name)."""


class OutputError(FeredgeError, OSError):
    """An output file or folder cannot be written (a read-only or virtual file system, no permission)."""


class PartialFailure(FeredgeError):
    """Some inputs failed and the others were done: the CLI prints the message and exits 1."""
