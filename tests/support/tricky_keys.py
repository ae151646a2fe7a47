"""Object keys that break naive gateways and file mappings: `../x`, `/abs`, `a//b`, `dir/`
beside `dir/x`, unicode, reserved URL characters, a 1024-byte key.

Tests that need them put them where they test (the export test adds them to the demo's
bucket); the demo itself shows a newcomer a person's files, not these.
"""

from __future__ import annotations

TRICKY_KEYS = [
    "../x",
    "../../etc/passwd",
    "/abs/path",
    "a//b",
    "dir/",
    "dir/inside.txt",
    "share/plus+and space/caf%/é?#.txt",
    "share/q=1&r=2.txt",
    "share/unicode/日本語/ファイル.txt",
    "share/emoji/🚀.txt",
    "share/trailing-space ",
    "share/tilde~and*star.txt",
    "long/" + "k" * (1024 - len("long/")),
]
