"""The hostile-input corpus through process_image: exact outcomes, in bounded time and memory."""

from __future__ import annotations

import time
import tracemalloc

import cv2
import pytest

from streams.processing import ImageRejected, ProcessedImage, ProcessingConfig, process_image
from tests.support import images
from tests.support.hostile import HTML, HostileCase, corpus, picture

CONFIG = ProcessingConfig()
CASES = {case.name: case for case in corpus()}
# Generous bounds for a shared 2-core machine; a header-refused case takes well under 1 ms.
HEADER_REFUSAL_SECONDS = 0.25
HEADER_REFUSAL_PEAK_BYTES = 1024 * 1024
DECODE_SECONDS = 3.0


def _outcome(data: bytes) -> ProcessedImage | ImageRejected:
    try:
        return process_image(data, CONFIG)
    except ImageRejected as rejected:
        return rejected


def _expected_of(outcome: ProcessedImage | ImageRejected) -> str:
    if isinstance(outcome, ImageRejected):
        return f"reject:{outcome.reason}"
    return outcome.status


@pytest.mark.parametrize("name", list(CASES))
def test_corpus_outcome(name: str) -> None:
    """Each corpus item gets exactly its expected status or reject reason, in bounded time."""
    case = CASES[name]
    started = time.perf_counter()
    outcome = _outcome(case.data)
    elapsed = time.perf_counter() - started
    assert _expected_of(outcome) == case.expected, getattr(outcome, "detail", outcome)
    assert elapsed < DECODE_SECONDS


@pytest.fixture
def no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any call to cv2.imdecode fail the test."""

    def refuse(*_args: object) -> None:
        pytest.fail("cv2.imdecode was called")

    monkeypatch.setattr(cv2, "imdecode", refuse)


@pytest.mark.parametrize("name", [case.name for case in corpus() if case.before_decode])
def test_refused_before_decode_quickly_and_cheaply(name: str, no_decoding: None) -> None:
    """Cases the header condemns (bombs, truncations, lies) never reach the decoder, return in
    well under a second and allocate under 1 MiB."""
    case = CASES[name]
    tracemalloc.start()
    try:
        started = time.perf_counter()
        with pytest.raises(ImageRejected) as caught:
            process_image(case.data, CONFIG)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert f"reject:{caught.value.reason}" == case.expected
    assert elapsed < HEADER_REFUSAL_SECONDS
    assert peak < HEADER_REFUSAL_PEAK_BYTES


def test_every_case_is_either_accepted_or_has_a_specific_reason() -> None:
    """The corpus covers every header-level reason, and rejects name a reason, never a status."""
    reasons = {case.reason for case in corpus() if case.rejected}
    assert reasons >= {
        "empty",
        "unknown_format",
        "truncated",
        "too_many_pixels",
        "bad_header",
        "undecodable",
    }


def _processed(name: str) -> ProcessedImage:
    outcome = process_image(CASES[name].data, CONFIG)
    assert outcome.status == "processed"
    return outcome


def test_cmyk_jpeg_has_the_brightness_of_its_rgb_original() -> None:
    """A CMYK JPEG is decoded with its colours the right way round (not inverted)."""
    rgb = process_image(images.jpeg(picture(800, 600, 59)), CONFIG)
    cmyk = _processed("jpeg-cmyk")
    assert abs(cmyk.brightness - rgb.brightness) < 8, (cmyk.brightness, rgb.brightness)


def test_16bit_png_scores_like_its_8bit_original() -> None:
    """A 16-bit PNG is scaled to 8 bits, not clipped or wrapped."""
    eight = process_image(images.png(picture(640, 360, 62)), CONFIG)
    sixteen = _processed("png-16bit")
    assert abs(sixteen.brightness - eight.brightness) < 1
    assert abs(sixteen.contrast - eight.contrast) < 1


def test_animated_gif_is_scored_on_its_bright_first_frame() -> None:
    """The animated GIF's dark second frame would be skipped_dark: it is processed (frame 1)."""
    assert _processed("gif-animated").brightness > CONFIG.dark_threshold + 40


@pytest.mark.parametrize("name", ["jpeg-plus-zip", "jpeg-plus-html", "png-plus-html"])
def test_polyglot_trailer_does_not_reach_the_output(name: str) -> None:
    """Bytes appended after EOI/IEND are accepted but the output, re-encoded, carries none."""
    jpeg = _processed(name).jpeg
    assert jpeg is not None
    assert b"PK\x03\x04" not in jpeg
    assert b"<script" not in jpeg
    assert HTML not in jpeg


def test_gif_js_polyglot_is_decoded_at_its_declared_screen_width() -> None:
    """The GIF/JS polyglot's screen width (the bytes ``/*``) is what the decoder allocates."""
    outcome = _processed("gif-js-polyglot")
    assert (outcome.width, outcome.height) == (0x2A2F, 240)


def test_corpus_is_deterministic() -> None:
    """Two builds of the corpus give the same bytes (the integration test and docs rely on it)."""
    corpus.cache_clear()
    again = corpus()
    assert [c.data for c in again] == [CASES[c.name].data for c in again]


def test_case_properties() -> None:
    """HostileCase.reason is the code after ``reject:``, None for an accepted case."""
    assert HostileCase("x", b"x", "reject:empty", "").reason == "empty"
    assert HostileCase("x", b"x", "processed", "").reason is None
