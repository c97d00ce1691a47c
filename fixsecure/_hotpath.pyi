# The C extension fixsecure/_hotpath.c: the runs of specs/hot-path.md. fixsecure.hotpath holds the
# reference implementation, ReferenceRunner, with the same signatures and results.
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
