"""Small helpers shared across the package."""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is renamed onto `path`, on error it is removed.

    Readers never see a half-written file: the rename is atomic on one filesystem.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    temporary = Path(temporary)
    os.chmod(temporary, 0o666 & ~current_umask())  # mkstemp makes 0600 files; give the usual permissions
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def current_umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")


def single_threaded_blas(function):
    """Run `function` with NumPy/SciPy's BLAS limited to one thread (threadpoolctl).

    The classical baselines make thousands of small eigendecompositions; with a multi-threaded OpenBLAS beside
    torch's OpenMP threads on a small machine each one took 20-50× longer (measured: 0.1-0.2 s against 4 ms for a
    119 × 119 `scipy.linalg.eigh` on 2 cores).
    """
    import functools

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1, user_api="blas"):
            return function(*args, **kwargs)

    return wrapper


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse, with a usage error on one line (naming the command and where its help is) and exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def lazy_exports(package: str, table: dict[str, tuple[str, ...]]):
    """`__getattr__`, `__dir__` and `__all__` for a package whose names are imported on first use, as transformers'
    `_LazyModule` does: `table` maps a submodule (relative to `package`) to the names it defines."""
    import importlib
    import sys

    module_of = {name: module for module, names in table.items() for name in names}

    def __getattr__(name: str):
        module = module_of.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *module_of})

    return __getattr__, __dir__, sorted(module_of)
