"""What a job's copies have found out about the target (and the source) while running.

Everything else a job's copies share is fixed when the job starts (transfer/context.py
`CopyJob`). These few facts are learnt from the answers of the ends and change the way the
next object is copied, so they live in one object whose every change is a named method that
says why, and is logged once when it happens.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


class TargetFindings:
    """What one job's copies in one worker have learnt; shared by all of them.

    `algorithm`: the flexible checksum sent with every write; None: Content-MD5 alone.
    `server_side`: the target's storage may copy from the source's itself.
    `check_target`: an object may be on the target already (False: the target was empty
    when the job was planned, so the per-object HEAD is skipped).
    `source_md5`: a source's plain-hex ETag may stand in for the MD5 of a single PUT's body.
    `checksum_checked`: whether the target refuses a part whose flexible checksum does not
    match its bytes; None until the probe (transfer/parts.py) has asked. True: parts are not
    hashed with MD5.
    """

    def __init__(self, *, algorithm: str | None, server_side: bool, check_target: bool) -> None:
        self.algorithm = algorithm
        self.server_side = server_side
        self.server_side_proven = False
        self.check_target = check_target
        self.source_md5 = True
        self.checksum_checked: bool | None = None

    def prove_server_side(self) -> None:
        """A server-side copy went through: later refusals are the object's, not the mode's."""
        self.server_side_proven = True

    def refuse_server_side(self, reason: object) -> None:
        """The target cannot copy from the source (its keys may not read the source bucket,
        or it does not copy at all): stream every later object through this process."""
        log.info("server-side copy unavailable (%s); streaming instead", reason)
        self.server_side = False

    def refuse_checksum(self) -> bool:
        """The target refused the flexible checksum: send Content-MD5 alone from now on.
        Returns whether this changed the algorithm (the job's record must follow)."""
        if self.algorithm is None:
            return False
        log.info("target refused %s checksums; using Content-MD5 alone", self.algorithm)
        self.algorithm = None
        return True

    def found_target_empty(self, empty: bool) -> None:
        """What a listing of the target prefix showed: an empty one needs no HEAD per object."""
        self.check_target = not empty

    def distrust_source_md5(self, key: str, etag: str | None, md5: str | None) -> None:
        """A source ETag was not the MD5 of its object's bytes: hash every object here."""
        if self.source_md5:
            log.warning(
                "%r: the source's ETag %s is not the MD5 of its bytes (%s); hashing every "
                "object of this job here",
                key,
                etag,
                md5,
            )
            self.source_md5 = False

    def probed(self, algorithm: str, *, checked: bool) -> None:
        """The probe's answer: whether the target checks each part's flexible checksum."""
        self.checksum_checked = checked
        log.info(
            "the target %s a part's %s: parts are hashed with %s",
            "checks" if checked else "does not check",
            algorithm,
            algorithm if checked else f"MD5 and {algorithm}",
        )

    def checksum_unanswered(self) -> None:
        """The target answered no checksum for an object whose parts carried no MD5: the
        probe's answer proves nothing, so the next try hashes the parts with MD5."""
        self.checksum_checked = False
