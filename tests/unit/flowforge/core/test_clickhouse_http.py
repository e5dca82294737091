"""The HTTP interface's request parsing: statements split for the engine, bodies decoded."""

from __future__ import annotations

import gzip
import zlib

import lz4.frame
import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowforge.core.clickhouse_http import (
    CANNOT_DECOMPRESS,
    NOT_IMPLEMENTED,
    SYNTAX_ERROR,
    UNKNOWN_FORMAT,
    QueryError,
    decompress,
    split_statement,
    status_of,
    top_level_words,
)


def test_insert_data_is_cut_after_the_format_name() -> None:
    """An INSERT's rows start after the format name and one newline; the column list (with a
    column named format) and the SETTINGS clause stay in the statement."""
    text = b"INSERT INTO t (`id`, format) SETTINGS async_insert=0 FORMAT Native\n\x00\x01FORMAT x"
    statement = split_statement(text, "TabSeparated")
    assert statement.is_insert
    assert statement.sql == "INSERT INTO t (`id`, format)"
    assert statement.settings == "SETTINGS async_insert=0"
    assert statement.output_format == "Native"
    assert statement.data == b"\x00\x01FORMAT x"


def test_select_keeps_its_text_and_reports_its_format() -> None:
    """A SELECT runs as sent; its FORMAT clause names the answer's format, else the default."""
    assert split_statement(b"SELECT 'FORMAT CSV' FORMAT JSON", "TSV").output_format == "JSON"
    plain = split_statement(b"SELECT 1 -- FORMAT CSV", "TabSeparated")
    assert (plain.sql, plain.output_format) == ("SELECT 1 -- FORMAT CSV", "TabSeparated")
    assert plain.data is None


def test_inline_values_insert_is_not_split() -> None:
    """INSERT ... VALUES carries its rows in the SQL and runs as sent."""
    statement = split_statement(b"INSERT INTO t VALUES (1, 'FORMAT Native')", "TabSeparated")
    assert (statement.data, statement.sql) == (None, "INSERT INTO t VALUES (1, 'FORMAT Native')")


@pytest.mark.parametrize(
    ("text", "code"),
    [
        (b"", SYNTAX_ERROR),
        (b"  -- only a comment", SYNTAX_ERROR),
        (b"SELECT '\xff'", SYNTAX_ERROR),
        (b"SELECT 1\x00", SYNTAX_ERROR),
        (b"INSERT INTO t FROM INFILE '/etc/passwd' FORMAT CSV", NOT_IMPLEMENTED),
        (b"SELECT 1 INTO OUTFILE '/tmp/x'", NOT_IMPLEMENTED),
    ],
)
def test_refused_statements(text: bytes, code: int) -> None:
    """Empty, non-UTF-8 or NUL-holding SQL and INFILE/OUTFILE are refused with a code."""
    with pytest.raises(QueryError) as info:
        split_statement(text, "TabSeparated")
    assert info.value.code == code
    assert info.value.body.startswith(f"Code: {code}. DB::Exception: ")


@pytest.mark.parametrize(
    ("encoding", "codec"),
    [("lz4", lz4.frame.compress), ("gzip", gzip.compress), ("deflate", zlib.compress),
     ("identity", bytes)],
)  # fmt: skip
def test_bodies_decode_per_content_encoding(encoding: str, codec: object) -> None:
    """A body compressed per its Content-Encoding decodes to the original bytes."""
    assert callable(codec)
    assert decompress(codec(b"1\tx\n" * 100), encoding, 400) == b"1\tx\n" * 100


def test_bad_bodies_get_codes() -> None:
    """An unknown encoding is NOT_IMPLEMENTED (501); a corrupt body CANNOT_DECOMPRESS (400)."""
    with pytest.raises(QueryError) as unknown:
        decompress(b"x", "snappy", 100)
    assert (unknown.value.code, status_of(unknown.value.code)) == (NOT_IMPLEMENTED, 501)
    with pytest.raises(QueryError) as corrupt:
        decompress(b"not zstd", "zstd", 100)
    assert (corrupt.value.code, status_of(corrupt.value.code)) == (CANNOT_DECOMPRESS, 400)
    with pytest.raises(QueryError) as truncated:
        decompress(gzip.compress(b"x" * 1000)[:-12], "gzip", 10_000)
    assert truncated.value.code == CANNOT_DECOMPRESS


@pytest.mark.parametrize("encoding", ["lz4", "gzip", "deflate"])
def test_a_body_decompressing_past_the_limit_is_refused(encoding: str) -> None:
    """A small body that decompresses past the limit is refused with 413, not expanded."""
    codec = {"lz4": lz4.frame.compress, "gzip": gzip.compress, "deflate": zlib.compress}[encoding]
    with pytest.raises(QueryError) as info:
        decompress(codec(b"\0" * 10_000_000), encoding, 1_000_000)
    assert info.value.status == 413


@given(st.binary(max_size=300), st.sampled_from(["TabSeparated", "Native"]))
def test_any_request_text_splits_or_is_refused(text: bytes, default_format: str) -> None:
    """Whatever the bytes, splitting gives a statement or a QueryError, never another error."""
    code = 0
    try:
        statement = split_statement(text, default_format)
    except QueryError as exc:
        code = exc.code
    else:
        assert statement.sql.strip()
    assert code in (0, SYNTAX_ERROR, NOT_IMPLEMENTED, UNKNOWN_FORMAT)


@given(st.text(max_size=300))
def test_top_level_words_are_words_of_the_text(sql: str) -> None:
    """Every word found is the text at its offsets, upper-cased."""
    for word, start, end in top_level_words(sql):
        assert sql[start:end].upper() == word
