"""The copy engine: push a user's objects to another S3 endpoint, verified and resumable."""

from __future__ import annotations

from transfer.config import TransferConfig
from transfer.spec import Destination, Source
from transfer.worker import TransferWorker

__all__ = ["Destination", "Source", "TransferConfig", "TransferWorker"]
