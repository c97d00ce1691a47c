# The C extension fixsecure/_hotpath.c: the runner of specs/hot-path.md. The protocol and the
# Python version (ReferenceRunner) are in fixsecure.hotpath; results are identical.
from fixsecure.hotpath import Aead, OpenResult, SealResult

class Runner:
    def __init__(self, aead: Aead, little_endian: bool, header_tags: bytes) -> None: ...
    def seal(
        self, buf: bytes, start: int, nonce: int, count: int, budget: int, max_size: int, /
    ) -> SealResult: ...
    def open(
        self,
        buf: bytes,
        start: int,
        nonce: int,
        count: int,
        budget: int,
        max_wire: int,
        max_size: int,
        /,
    ) -> OpenResult: ...
