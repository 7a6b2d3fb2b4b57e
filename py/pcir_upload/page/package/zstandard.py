"""Zstandard from this Python: the standard library's from 3.14 (Pyodide 314 has it in its
core), `backports.zstd` (the same module, pinned in requirements.txt) on older CPythons."""

from __future__ import annotations

try:
    from compression import zstd
except ImportError:  # CPython before 3.14: the repository side and the tests
    from backports import zstd  # type: ignore[no-redef]

__all__ = ["zstd"]
