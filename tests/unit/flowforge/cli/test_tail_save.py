"""`flowforge tail --save` on the metadata topic is refused with a reason, not ignored."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowforge.cli.main import main


def test_save_on_the_metadata_topic_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tail images.metadata --save DIR` exits 2 saying the topic holds JSON records, not
    images, and naming the topics --save works with; DIR stays empty."""
    out = tmp_path / "out"
    code: object = 0
    try:
        main(["tail", "images.metadata", "-n", "1", "--save", str(out)])
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2
    assert "images.metadata holds JSON metadata records, not images: nothing to save" in err
    assert "images.raw" in err
    assert not out.exists() or not any(out.iterdir())
