"""The copy engine: a user's objects from one `Storage` to another, verified and resumable.

A push goes from Ferry's storage to the user's S3 endpoint (TransferWorker); an import comes
from the user's old provider into Ferry's storage (copy_job, transfer/run.py).
"""

from __future__ import annotations

from transfer.config import TransferConfig
from transfer.observe import SourceObserver
from transfer.run import copy_job
from transfer.spec import Destination, Source, Target
from transfer.worker import TransferWorker

__all__ = [
    "Destination",
    "Source",
    "SourceObserver",
    "Target",
    "TransferConfig",
    "TransferWorker",
    "copy_job",
]
