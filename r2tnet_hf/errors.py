"""The one error type for bad fMRI input."""

from __future__ import annotations

import os


class FmriInputError(ValueError):
    """Bad fMRI input: a one-line message naming the source, what was expected and what was found.

    Raised where input enters the package (file readers, `FmriProcessor`, model `forward`). The `r2tnet` CLI turns
    it into that line on stderr and exit status 2.

    Example:
        >>> raise FmriInputError.for_source("sub-01_bold.tsv", expected="400 ROIs", found="333 ROIs")
        FmriInputError: sub-01_bold.tsv: expected 400 ROIs, found 333 ROIs
    """

    def __init__(self, message: str, source: str | os.PathLike | None = None):
        # One line, always: newlines in nested messages (numpy, nibabel) would break the CLI contract.
        message = " ".join(str(message).split())
        self.source = None if source is None else str(source)
        super().__init__(message)

    @classmethod
    def for_source(
        cls, source: str | os.PathLike | None, *, expected: str, found: str, hint: str | None = None
    ) -> FmriInputError:
        name = describe_source(source)
        message = f"{name}: expected {expected}, found {found}"
        if hint:
            message += f" ({hint})"
        return cls(message, source=source)


def describe_source(source: str | os.PathLike | None) -> str:
    """How a message names an input: the file path, or a placeholder for in-memory arrays."""
    if source is None:
        return "<array>"
    return str(source)


# errno → (what a command needed, what it found), for the I/O failures a user can meet and fix
_OS_ERRORS = {
    "ENOENT": ("an existing file or folder", "none"),
    "EACCES": ("permission to read or write it", "permission denied"),
    "EPERM": ("permission to read or write it", "operation not permitted"),
    "EROFS": ("a writable location", "a read-only file system"),
    "ENOSPC": ("free disk space", "no space left on the device"),
    "EDQUOT": ("free disk quota", "the quota exceeded"),
    "EISDIR": ("a file", "a folder"),
    "ENOTDIR": ("a folder", "a file"),
    "EEXIST": ("a new path", "an existing one"),
}


def expected_failure_line(error: BaseException) -> str | None:
    """The one line an entry point prints for a failure that input or the environment can cause (bad input, I/O,
    decoding, a corrupt JSON/YAML/safetensors/Parquet file, memory, the network), or `None` for anything else: a bug,
    which keeps its traceback.

    Readers raise `FmriInputError` naming the file wherever they can; this is the boundary for what escapes them.
    """
    import errno
    import json

    if isinstance(error, FmriInputError):
        return str(error)
    if isinstance(error, OSError) and error.errno is not None:
        name = errno.errorcode.get(error.errno, "")
        expected, found = _OS_ERRORS.get(name, ("a working file system", error.strerror or str(error)))
        where = error.filename if error.filename is not None else "<file system>"
        return str(FmriInputError.for_source(where, expected=expected, found=f"{found} ({name or error.errno})"))
    if isinstance(error, UnicodeDecodeError):
        return str(
            FmriInputError.for_source(
                "<text input>", expected="UTF-8 text", found=f"byte {error.object[error.start]:#04x} at {error.start}"
            )
        )
    if isinstance(error, json.JSONDecodeError):
        found = f"{error.msg} at line {error.lineno} column {error.colno}"
        return str(FmriInputError.for_source("<JSON input>", expected="valid JSON", found=found))
    if isinstance(error, MemoryError):
        return str(
            FmriInputError.for_source(
                "<memory>",
                expected="data that fit in memory",
                found=f"a MemoryError ({error or 'allocation failed'})",
                hint="use a smaller --batch-size, shorter windows, or a machine with more memory",
            )
        )
    return _library_failure_line(error)


def _library_failure_line(error: BaseException) -> str | None:
    """Failures of the libraries that read files or reach the network, recognised by type without importing them."""
    kinds = {  # (top-level package, class name) → what was expected
        ("yaml", "YAMLError"): "valid YAML",
        ("safetensors", "SafetensorError"): "a readable safetensors file",
        ("pyarrow", "ArrowInvalid"): "a readable Parquet/Arrow file",
        ("pyarrow", "ArrowIOError"): "a readable Parquet/Arrow file",
        ("huggingface_hub", "HfHubHTTPError"): "a reachable Hugging Face Hub",
        ("huggingface_hub", "OfflineModeIsEnabled"): "network access (HF_HUB_OFFLINE is set)",
    }
    for cls in type(error).__mro__:
        expected = kinds.get((cls.__module__.split(".")[0], cls.__name__))
        if expected is not None:
            mark = getattr(error, "problem_mark", None)  # YAML knows the file and the line
            source = getattr(mark, "name", None) or f"<{type(error).__name__}>"
            text = " ".join(str(error).split()) or type(error).__name__
            return str(FmriInputError.for_source(source, expected=expected, found=text))
    return None
