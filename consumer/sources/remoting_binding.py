"""Loading rocketmq-client-python 2.0.0, the RocketMQ 4.x (Remoting) binding, and what its
ctypes layer lacks.

The binding and the gRPC client (rocketmq-python-client 5.x) both install a top-level package
`rocketmq`. The 2.0.0 one lives in its own directory (`pip install --target`, the
`consumer[rocketmq4]` extra: `$CONSUMER_ROCKETMQ4_PATH`, default `<venv>/rocketmq4`) and is
loaded from there under another module name, so both can live in one process and neither
shadows the other. Its native half, librocketmq, comes from `$CONSUMER_LIBROCKETMQ` when set.

Its `body` stops at the first NUL byte (`Body` reads GetMessageBodyLength), and its `start()`
and `shutdown()` can block for good (`watchdog`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.util
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import structlog

from consumer.errors import ConfigError

log = structlog.get_logger("consumer.sources.remoting")

MODULE = "consumer_rocketmq4"
"""The name the 2.0.0 binding is imported under (its own name, `rocketmq`, is the 5.x one's)."""
_import_lock = threading.Lock()
_loaded: list[ModuleType] = []
"""The binding's `client` module, once loaded: librocketmq is loaded once per process."""


def binding_path() -> Path:
    return Path(os.environ.get("CONSUMER_ROCKETMQ4_PATH") or Path(sys.prefix) / "rocketmq4")


def unavailable() -> str | None:
    """Why the binding cannot load here (without loading it), or None."""
    if not (binding_path() / "rocketmq" / "client.py").is_file():
        return f"rocketmq-client-python 2.0.0 is not in {binding_path()} (make rocketmq4)"
    library = os.environ.get("CONSUMER_LIBROCKETMQ", "")
    packaged = binding_path() / "rocketmq" / "librocketmq.so"
    if library:
        return None if Path(library).is_file() else f"CONSUMER_LIBROCKETMQ={library} is missing"
    if packaged.is_file() or ctypes.util.find_library("rocketmq"):
        return None
    return "no librocketmq: set CONSUMER_LIBROCKETMQ (scripts/build-librocketmq.sh prints it)"


def import_binding() -> ModuleType:
    """rocketmq-client-python 2.0.0's `client` module, loaded over `$CONSUMER_LIBROCKETMQ`."""
    with _import_lock:
        if _loaded:
            return _loaded[0]
        package = binding_path() / "rocketmq"
        if not (package / "client.py").is_file():
            raise ConfigError(
                "rocketmq.protocol",
                f"remoting needs rocketmq-client-python 2.0.0 in {package.parent} "
                "(pip install --target DIR rocketmq-client-python==2.0.0, or "
                "set CONSUMER_ROCKETMQ4_PATH)",
            )
        library = os.environ.get("CONSUMER_LIBROCKETMQ", "")
        if library and not Path(library).is_file():
            raise ConfigError(
                "rocketmq.protocol",
                f"CONSUMER_LIBROCKETMQ={library} does not exist "
                "(build it with scripts/build-librocketmq.sh SOURCE_TARBALL)",
            )
        client = _load(package, library)
        ffi = importlib.import_module(f"{MODULE}.ffi")
        if library and os.path.realpath(ffi._DYLIB_PATH) != os.path.realpath(library):
            log.warning(
                "rocketmq-client-python loaded its packaged librocketmq, not CONSUMER_LIBROCKETMQ",
                loaded=ffi._DYLIB_PATH,
            )
        _loaded.append(client)
        return client


def _load(package: Path, library: str) -> ModuleType:
    """Import the package under `MODULE`, its ctypes layer finding `library` if given."""
    find = ctypes.util.find_library
    if library:
        # The binding asks find_library('rocketmq') when its package holds no .so.
        ctypes.util.find_library = lambda name: library if name == "rocketmq" else find(name)
    try:
        spec = importlib.util.spec_from_file_location(
            MODULE, package / "__init__.py", submodule_search_locations=[str(package)]
        )
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[MODULE] = module
        spec.loader.exec_module(module)
        return importlib.import_module(f"{MODULE}.client")
    except (ImportError, OSError) as exc:
        sys.modules.pop(MODULE, None)
        raise ConfigError(
            "rocketmq.protocol",
            f"cannot load librocketmq ({exc}); set CONSUMER_LIBROCKETMQ to the .so built by "
            "scripts/build-librocketmq.sh, or install upstream's release package",
        ) from exc
    finally:
        ctypes.util.find_library = find


class Body:
    """Body and length from the C API (the binding's `body` stops at a NUL byte)."""

    def __init__(self) -> None:
        dll = sys.modules[f"{MODULE}.ffi"].dll
        self._body = dll["GetMessageBody"]
        self._body.argtypes = [ctypes.c_void_p]
        self._body.restype = ctypes.c_void_p
        self._length = dll["GetMessageBodyLength"]
        self._length.argtypes = [ctypes.c_void_p]
        self._length.restype = ctypes.c_int

    def __call__(self, handle: int) -> bytes:
        pointer, length = self._body(handle), self._length(handle)
        return ctypes.string_at(pointer, length) if pointer and length > 0 else b""


def watchdog(call: Callable[[], object], timeout: float) -> bool:
    """Run `call` on a daemon thread; False if it did not return within `timeout`."""
    thread = threading.Thread(target=call, name="rocketmq-watchdog", daemon=True)
    thread.start()
    thread.join(timeout)
    return not thread.is_alive()


__all__ = ["MODULE", "Body", "binding_path", "import_binding", "unavailable", "watchdog"]
