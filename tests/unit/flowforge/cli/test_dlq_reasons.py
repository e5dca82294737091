"""`flowforge dlq replay`: reasons checked against the known codes; refused ids never replayed."""

from __future__ import annotations

import pytest

from bridges.batch import NOT_AN_IMAGE
from flowforge.cli.dlq import why_not_replayable
from flowforge.cli.main import main
from flowforge.cli.tail import Record
from flowforge.core.dead_letter import KNOWN_REASONS, REASONS_BY_STAGE
from flowforge.core.envelope import ERROR_REASON, ERROR_STAGE, SOURCE_ID
from streams.processing.errors import REJECT_REASONS


def dead_letter(reason: str, stage: str = "bridge", source: str = "bad name!") -> Record:
    headers = {ERROR_REASON: reason, ERROR_STAGE: stage, SOURCE_ID: source}
    return Record("images.dlq", 0, 0, 0, source.encode(), b"\xff\xd8 image", headers)


def test_an_image_the_bridge_refused_for_its_source_id_is_not_replayable() -> None:
    """A bad_source_id dead letter is skipped as "refused source id" (a replay would make a
    row named after the refused id); other bridge rejects of images stay replayable."""
    assert why_not_replayable(dead_letter("bad_source_id"), "images.raw") == "refused source id"
    assert why_not_replayable(dead_letter("empty", source="cam-01"), "images.raw") is None


def test_the_known_reasons_cover_every_stage_s_codes() -> None:
    """The known reason codes include every processing reject code, the bridges' codes, the
    envelope's and the worker's internal error, and the sink's."""
    assert set(REASONS_BY_STAGE["process"]) >= REJECT_REASONS | {"internal_error"}
    assert {"empty", "too_large", "bad_source_id", NOT_AN_IMAGE} <= KNOWN_REASONS
    assert {"bad_envelope", "clickhouse_rejected"} <= KNOWN_REASONS


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[object, str]:
    code: object = 0
    try:
        main(args)
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


def test_an_unknown_reason_is_a_usage_error_listing_the_known_codes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`dlq replay --reason bogus` exits 2 naming the code and listing the known ones."""
    code, err = run(["dlq", "replay", "--reason", "bogus", "--dry-run"], capsys)
    assert code == 2
    assert "unknown reason code 'bogus'; known:" in err
    assert "internal_error" in err
    assert "undecodable" in err


def test_asking_to_replay_refused_source_ids_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`dlq replay --reason bad_source_id` exits 2 saying such dead letters are not replayed."""
    code, err = run(["dlq", "replay", "--reason", "bad_source_id"], capsys)
    assert code == 2
    assert "bad_source_id dead letters are not replayed" in err
