"""Build-on-first-use C++ extensions (torch.utils.cpp_extension), shared by the fused CPU kernels.

Each kernel has a torch definition that stays the reference and the GPU path; the extension is an
optional CPU speed-up. It needs a C++ compiler and ninja; when the build fails, or the kernel's
environment switch is "0", `load()` returns None, says why in `error`, and callers use torch
(with RBC_RAY_REQUIRE_KERNELS=1 a failed build raises instead).
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import threading
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

REQUIRE = "RBC_RAY_REQUIRE_KERNELS"
"""Set to 1 (CI does) to make a failed kernel build an error instead of a fallback to torch, so the
kernels' tests fail rather than skip."""


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

    @property
    def module(self) -> Any:
        """The module once loaded, else None; lock-free, for per-step calls."""
        return self._module

    def load(self) -> Any:
        """The compiled module, or None with `error` set (disabled, no compiler, build failure)."""
        with self._lock:
            if self._module is None and self.error is None:
                if os.environ.get(self.switch, "1") == "0":
                    self.error = f"disabled by {self.switch}=0"
                    return None
                try:
                    from torch.utils.cpp_extension import load as load_extension

                    name, source, build, fresh = self._stable_source()
                    if fresh:
                        print(f"rbc-ray: building the {self.what} ({name}) once for this machine, "
                              "about a minute; later runs load it from torch's extension cache",
                              file=sys.stderr, flush=True)
                    self._module = load_extension(name=name, sources=[str(source)], extra_cflags=self.cflags,
                                                  extra_ldflags=["-fopenmp"], build_directory=str(build),
                                                  verbose=False)
                except Exception as err:  # no compiler, no ninja, ...: callers fall back to torch
                    msg = str(err).strip()
                    self.error = f"{type(err).__name__}: {msg.splitlines()[-1] if msg else ''}"
                    if os.environ.get(REQUIRE, "0") == "1":
                        raise RuntimeError(f"the {self.what} failed to build and {REQUIRE}=1 requires it: "
                                           f"{self.error}") from err
                    log.warning("rbc-ray: %s unavailable, using torch (%s)", self.what, self.error)
            return self._module

    def _stable_source(self) -> tuple[str, Path, Path, bool]:
        """(extension name, source path, build folder, whether a build is needed), keyed by content.

        The source is copied into its own build folder, named by a hash of its text: every
        checkout of the same code (a fresh clone, CI) then reuses one build, and two versions of
        the code never overwrite each other's."""
        text = self.source.read_bytes()
        name = f"{self.name}_{hashlib.sha256(text).hexdigest()[:12]}"
        build = build_root() / name
        build.mkdir(parents=True, exist_ok=True)
        stable = build / f"{name}.cpp"
        if not stable.exists() or stable.read_bytes() != text:  # atomic: workers may race here
            tmp = build / f".{name}.{os.getpid()}.cpp"
            tmp.write_bytes(text)
            os.replace(tmp, stable)
        return name, stable, build, not (build / f"{name}.so").exists()


def build_root() -> Path:
    """Where extensions are built: $TORCH_EXTENSIONS_DIR, else torch's own default folder
    (~/.cache/torch_extensions/py<version>_<cpu|cuXY>), so builds are shared with torch's cache."""
    root = os.environ.get("TORCH_EXTENSIONS_DIR")
    if root:
        return Path(root)
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    python = f"py{sys.version_info.major}{sys.version_info.minor}{getattr(sys, 'abiflags', '')}"
    device = "cpu" if torch.version.cuda is None else f"cu{torch.version.cuda.replace('.', '')}"
    return Path(os.path.realpath(cache)) / "torch_extensions" / f"{python}_{device}"
