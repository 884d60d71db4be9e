"""The fetcher's content decoder: gzip and deflate in pieces of at most 64 KiB, whatever they inflate to."""

import zlib

import pytest

from lc_async_pipelines.news._decode import PIECE_BYTES, DecodeError, Decoder

TEXT = b"<html><body>" + b"<p>The harbour reopened on Thursday.</p>" * 2000 + b"</body></html>"


def compress(data: bytes, wbits: int) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, wbits)
    return packer.compress(data) + packer.flush()


def decoded(decoder: Decoder, body: bytes, read: int = 1000) -> list[bytes]:
    pieces = []
    for start in range(0, len(body), read):  # as the network hands it over
        pieces.extend(decoder.decode(body[start : start + read]))
    pieces.extend(decoder.flush())
    return pieces


@pytest.mark.parametrize(
    ("encoding", "wbits"),
    [
        ("gzip", zlib.MAX_WBITS | 16),
        ("x-gzip", zlib.MAX_WBITS | 16),
        ("deflate", zlib.MAX_WBITS),  # as RFC 9110 says: zlib's format
        ("deflate", -zlib.MAX_WBITS),  # as some servers send it: raw
        (" GZIP ", zlib.MAX_WBITS | 16),
    ],
)
def test_each_encoding_decodes(encoding, wbits):
    assert b"".join(decoded(Decoder(encoding), compress(TEXT, wbits))) == TEXT


def test_stacked_encodings_are_undone_last_first():
    body = compress(compress(TEXT, zlib.MAX_WBITS | 16), zlib.MAX_WBITS)
    assert b"".join(decoded(Decoder("gzip, deflate"), body)) == TEXT


@pytest.mark.parametrize("encoding", ["", "identity", "utf-8"])
def test_no_encoding_or_an_unknown_one_passes_bytes_through(encoding):
    # unknown values are passed through, as httpx does
    assert b"".join(decoded(Decoder(encoding), TEXT)) == TEXT


@pytest.mark.parametrize("encoding", ["br", "zstd", "gzip, br", "compress"])
def test_encodings_not_asked_for_are_refused(encoding):
    with pytest.raises(DecodeError, match="was not asked for"):
        Decoder(encoding)


def test_corrupt_data_is_a_decode_error():
    with pytest.raises(DecodeError):
        decoded(Decoder("gzip"), b"\x1f\x8b\x08\x00not gzip at all")


def test_a_bomb_comes_out_in_small_pieces():
    # 64 MiB of zeros in about 64 KB: one network read of it is the whole bomb
    bomb = compress(bytes(64 << 20), zlib.MAX_WBITS | 16)
    decoder = Decoder("gzip")
    total = 0
    for piece in decoder.decode(bomb):
        assert len(piece) <= PIECE_BYTES
        total += len(piece)
        if total > 1_000_000:
            break  # where the fetcher's cap stops
    assert total <= 1_000_000 + PIECE_BYTES
