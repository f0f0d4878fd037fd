"""NVML wrapped once: lazy init, "not available" as None, each missing function logged once.

Every NVML call the agent makes goes through Nvml.call, so NotSupported,
FunctionNotFound, a lost GPU or a missing library are handled here and
nowhere else. Tests hand in a double with the same names as pynvml.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any

from ironsight.agent.once import log_once

log = logging.getLogger("ironsight.agent")

# Errors that mean "this value does not exist on this GPU / driver": NULL it.
_ABSENT = (
    "NVML_ERROR_NOT_SUPPORTED",
    "NVML_ERROR_FUNCTION_NOT_FOUND",
    "NVML_ERROR_NOT_FOUND",
    "NVML_ERROR_NO_DATA",
)
# Of those, the ones a GPU and driver keep saying (no fan on an SXM board, no energy
# counter before Volta): the same call is not made again until forget_absent(), which
# the GPU sampler calls with each inventory refresh (a minute) in case MIG mode or the
# driver changed. Each such call was a driver round trip and a raised exception per
# GPU per tick. NOT_FOUND and NO_DATA can pass (no new samples yet) and are asked again.
_NEVER = ("NVML_ERROR_NOT_SUPPORTED", "NVML_ERROR_FUNCTION_NOT_FOUND")


class NvmlUnavailable(Exception):
    """No NVML library or driver on this machine: a normal state, not a fault."""


class Nvml:
    def __init__(self, module: Any = None) -> None:
        self._module = module
        self._lock = threading.Lock()
        self._ready = False
        self.lib: Any = None
        self._never: set[tuple[Any, ...]] = set()

    def init(self) -> None:
        with self._lock:
            if self._ready:
                return
            lib: Any = self._module
            if lib is None:
                try:
                    import pynvml
                except ImportError as exc:
                    raise NvmlUnavailable("nvidia-ml-py is not installed") from exc
                lib = pynvml
            try:
                lib.nvmlInit()
            except lib.NVMLError as exc:
                raise NvmlUnavailable(f"NVML not available: {exc}") from exc
            self.lib = lib
            self._ready = True

    def _code(self, name: str) -> int | None:
        value = getattr(self.lib, name, None)
        return value if isinstance(value, int) else None

    def call(self, fn: str, *args: Any) -> Any:
        """The function's result, or None when this GPU or driver does not have it."""
        func = getattr(self.lib, fn, None)
        if func is None:
            log_once(f"nvml.missing.{fn}", f"gpu: {fn} is not in this nvidia-ml-py; its values are NULL")
            return None
        # The first argument is a device handle (a ctypes pointer, unhashable): by identity,
        # as the sampler keeps each GPU's handle for its lifetime.
        key = (fn, id(args[0]), *args[1:]) if args else (fn,)
        try:
            if key in self._never:
                return None
        except TypeError:  # another unhashable argument (a list of field ids): not remembered
            key = ()
        try:
            return func(*args)
        except self.lib.NVMLError as exc:
            code = getattr(exc, "value", None)
            if code in {self._code(n) for n in _ABSENT}:
                if key and code in {self._code(n) for n in _NEVER}:
                    self._never.add(key)
                log_once(f"nvml.absent.{fn}", f"gpu: {fn} not supported here ({exc}); its values are NULL")
                return None
            raise

    def forget_absent(self) -> None:
        """Ask again what was not supported (after a minute, or when the GPUs change)."""
        self._never.clear()

    def shutdown(self) -> None:
        with self._lock:
            if self._ready:
                with contextlib.suppress(self.lib.NVMLError):
                    self.lib.nvmlShutdown()
                self._ready = False
