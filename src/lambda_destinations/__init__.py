"""lambda-destinations: a worker for AWS Lambda asynchronous-invocation destination queues."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("lambda-destinations")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

__all__ = ["__version__"]
