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
