"""Content decoding (gzip, deflate) in small pieces, so a size cap holds as bytes come out.

httpx decodes each network read whole: one 64 KiB read of a gzip bomb comes
out as 64 MiB before a cap can look at it (1 MiB on the wire inflating to
1 GiB cost about 130 MB per page in flight). Here every piece is at most
:data:`PIECE_BYTES`, by zlib's ``max_length``
(https://docs.python.org/3/library/zlib.html#zlib.Decompress.decompress);
the compressed input a piece leaves is kept in ``unconsumed_tail``.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

__all__ = ["ACCEPT_ENCODING", "PIECE_BYTES", "DecodeError", "Decoder"]

PIECE_BYTES = 64 * 1024
# What the fetcher asks for: only what it decodes in bounded pieces (not br or
# zstd, whose decoders here cannot stop at a size).
ACCEPT_ENCODING = "gzip, deflate"
_REFUSED = frozenset({"br", "zstd", "compress", "x-compress"})


class DecodeError(ValueError):
    """A body that cannot be decoded: corrupt data, or an encoding that was not asked for."""


class _Inflate:
    """One zlib stream (gzip, or deflate with or without its zlib header)."""

    def __init__(self, wbits: int, *, raw_fallback: bool = False) -> None:
        self._inflate = zlib.decompressobj(wbits)
        self._raw_fallback = raw_fallback
        self._more = False  # the last piece was full: output may be pending

    def feed(self, data: bytes) -> Iterator[bytes]:
        while (data or self._more) and not self._inflate.eof:
            try:
                piece = self._inflate.decompress(data, PIECE_BYTES)
            except zlib.error as exc:
                if not self._raw_fallback:
                    raise DecodeError(str(exc)) from None
                # "deflate" sent without the zlib header, as some servers do (httpx accepts it too)
                self._inflate = zlib.decompressobj(-zlib.MAX_WBITS)
                self._raw_fallback = False
                continue
            self._raw_fallback = False
            data = self._inflate.unconsumed_tail
            self._more = len(piece) == PIECE_BYTES
            if piece:
                yield piece

    def flush(self) -> Iterator[bytes]:
        yield from self.feed(b"")


class Decoder:
    """Decode a body sent with ``Content-Encoding``, in pieces of at most :data:`PIECE_BYTES`.

    Args:
        content_encoding: the header's value: ``""``, ``identity``, ``gzip``
            (``x-gzip``), ``deflate``, or several of them comma-separated (in
            the order they were applied). Other values are passed through as
            httpx does, except ``br``, ``zstd`` and ``compress``.

    Raises:
        DecodeError: ``br``, ``zstd`` or ``compress`` (never asked for, see
            :data:`ACCEPT_ENCODING`); from :meth:`decode`, corrupt data.
    """

    def __init__(self, content_encoding: str) -> None:
        self._stages: list[_Inflate] = []
        codings = [c.strip().lower() for c in content_encoding.split(",") if c.strip()]
        for coding in reversed(codings):  # the last applied is undone first
            if coding in ("gzip", "x-gzip"):
                self._stages.append(_Inflate(zlib.MAX_WBITS | 16))
            elif coding == "deflate":
                self._stages.append(_Inflate(zlib.MAX_WBITS, raw_fallback=True))
            elif coding in _REFUSED:
                raise DecodeError(f"{coding} was not asked for")

    def decode(self, data: bytes) -> Iterator[bytes]:
        """Yield the decoded pieces of ``data``, the next bytes as received."""
        return self._through(0, data)

    def flush(self) -> Iterator[bytes]:
        """Yield what is left once the body has ended."""
        for index, stage in enumerate(self._stages):
            for piece in stage.flush():
                yield from self._through(index + 1, piece)

    def _through(self, index: int, data: bytes) -> Iterator[bytes]:
        if index == len(self._stages):
            if data:
                yield data
            return
        for piece in self._stages[index].feed(data):
            yield from self._through(index + 1, piece)
