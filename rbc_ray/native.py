"""Build-on-first-use C++ extensions (torch.utils.cpp_extension), shared by the fused CPU kernels.

Each kernel has a torch definition that stays the reference and the GPU path; the extension is an
optional CPU speed-up. It needs a C++ compiler and ninja; when the build fails, or the kernel's
environment switch is "0", `load()` returns None, says why in `error`, and callers use torch.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)


def cpu_flags(*extra: str) -> list[str]:
    """Optimisation flags for this CPU. -fopenmp matters: at::parallel_for is a header template and
    runs serially unless the extension is built with OpenMP, like torch itself."""
    flags = ["-O3", "-fopenmp", "-fno-trapping-math", *extra]
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except AttributeError:  # older torch
        capability = "DEFAULT"
    if capability in ("AVX2", "AVX512"):
        flags += ["-mavx2", "-mfma"]
    return flags


class NativeExtension:
    """One extension: built (or taken from torch's cache) at the first `load()`, once per process."""

    def __init__(self, name: str, source: Path, switch: str, what: str, cflags: list[str]) -> None:
        self.name, self.source, self.switch, self.what, self.cflags = name, source, switch, what, cflags
        self.error: str | None = None
        self._module: Any = None
        self._lock = threading.Lock()

    def load(self) -> Any:
        """The compiled module, or None with `error` set (disabled, no compiler, build failure)."""
        with self._lock:
            if self._module is None and self.error is None:
                if os.environ.get(self.switch, "1") == "0":
                    self.error = f"disabled by {self.switch}=0"
                    return None
                try:
                    from torch.utils.cpp_extension import load as load_extension

                    if not self._cached():
                        print(f"rbc-ray: building the {self.what} ({self.name}) once for this machine, "
                              "about a minute; later runs load it from torch's extension cache",
                              file=sys.stderr, flush=True)
                    self._module = load_extension(name=self.name, sources=[str(self.source)],
                                                  extra_cflags=self.cflags, extra_ldflags=["-fopenmp"],
                                                  verbose=False)
                except Exception as err:  # no compiler, no ninja, ...: callers fall back to torch
                    msg = str(err).strip()
                    self.error = f"{type(err).__name__}: {msg.splitlines()[-1] if msg else ''}"
                    log.warning("rbc-ray: %s unavailable, using torch (%s)", self.what, self.error)
            return self._module

    def _cached(self) -> bool:
        """Whether a build of this extension is already on disk (it may still be rebuilt if stale)."""
        try:
            from torch.utils.cpp_extension import _get_build_directory  # no public equivalent

            return (Path(_get_build_directory(self.name, False)) / f"{self.name}.so").exists()
        except Exception:
            return True  # unknown layout: say nothing
