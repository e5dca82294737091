"""`make run`'s publish hint and README's quick start name an image the repository bundles."""

from __future__ import annotations

import re
from pathlib import Path

from streams.processing import ProcessingConfig, process_image

REPO = Path(__file__).resolve().parents[2]


def test_the_publish_hints_name_a_bundled_image_the_worker_processes() -> None:
    """The `mosquitto_pub ... -f FILE` in the Makefile's run hint and in README's quick start
    name the same file, which exists in the repository and processes to status `processed`."""
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    pattern = re.compile(r"mosquitto_pub -q 1 -t images/raw/my-cam -f ([^\s\"]+)")
    [in_makefile] = pattern.findall(makefile)
    in_readme = pattern.findall(readme)
    assert in_readme == [in_makefile]
    sample = REPO / in_makefile
    assert sample.is_file(), f"{in_makefile} is not in the repository"
    assert process_image(sample.read_bytes(), ProcessingConfig()).status == "processed"
