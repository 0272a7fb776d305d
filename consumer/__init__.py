"""consumer: one trustworthy stream of call records from China's cloud telephony platforms."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("consumer")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
