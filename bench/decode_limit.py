"""The decode limit (baseline) on one core, and FlowForge's processing core against it.

    .venv/bin/python -m bench.decode_limit [--rounds 5] [--seconds 1.0] [--quick]

Pinned to one CPU (``os.sched_setaffinity``) with OpenCV single-threaded. For each image set
(720p and 1080p camera-like q85 JPEGs, the real photos of bench/images.py), in alternating
rounds (baseline first in even rounds, FlowForge first in odd ones, so drift hits both):

- baseline: the fastest correct OpenCV path in a tight loop: JPEG decoded at the largest DCT
  reduction (1/2, 1/4, 1/8) that still covers 640x360 (full decode otherwise), resized to
  640x360 (INTER_AREA when shrinking by 2 or more, else INTER_LINEAR; skipped when already
  640x360), the output encoded as JPEG q85, mean luma;
- FlowForge: ``streams.processing.process_image`` with the processing config of the default
  settings (it also checks the header and completeness, and scores contrast and sharpness).

images/s is wall time over the loop, CPU-ms per image is the thread's CPU time. The ratio
FlowForge / baseline is taken per round, in images per CPU-second (``<set>_ratio``: what the core
can do, robust to other processes taking the CPU away on a shared machine) and in wall-clock
images/s (``<set>_wall_ratio``). Writes bench/results/decode_limit.json;
when a median ratio falls short of 0.95, a cProfile of process_image goes into the notes.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from bench.images import ImageSet, camera_set, photo_set
from bench.results import Figure, description, write
from flowforge.core.settings import Settings
from streams.app import processing_config
from streams.processing import ProcessingConfig, process_image
from streams.processing.decoding import choose_reduction, decode
from streams.processing.header import read_header
from streams.processing.scores import WORKING_AREA, luma_scores, working_image
from streams.processing.truncation import check_complete

OUT_WIDTH, OUT_HEIGHT = 640, 360
JPEG_QUALITY = 85
TARGET_RATIO = 0.95
_REDUCED = {
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}
# BT.601 luma weights (what COLOR_BGR2GRAY uses), in BGR order: the mean of luma is the
# weighted sum of the channel means.
_LUMA_BGR = (0.114, 0.587, 0.299)


@dataclass(frozen=True)
class BaselineJob:
    """One image with its decode flag and resize interpolation, chosen before the loop."""

    data: np.ndarray
    flag: int
    interpolation: int | None  # None: already 640x360


def baseline_job(data: bytes) -> BaselineJob:
    """The fastest correct decode flag and interpolation for ``data``."""
    array = np.frombuffer(data, np.uint8)
    probe = cv2.imdecode(array, cv2.IMREAD_COLOR)
    height, width = probe.shape[:2]
    flag, decoded = cv2.IMREAD_COLOR, (width, height)
    if data[:2] == b"\xff\xd8":
        for factor in (8, 4, 2):
            if width // factor >= OUT_WIDTH and height // factor >= OUT_HEIGHT:
                flag = _REDUCED[factor]
                decoded = (-(-width // factor), -(-height // factor))
                break
    if decoded == (OUT_WIDTH, OUT_HEIGHT):
        interpolation = None
    elif decoded[0] >= 2 * OUT_WIDTH or decoded[1] >= 2 * OUT_HEIGHT:
        interpolation = cv2.INTER_AREA
    else:
        interpolation = cv2.INTER_LINEAR
    return BaselineJob(array, flag, interpolation)


def baseline(job: BaselineJob) -> tuple[bytes, float]:
    """Decode, resize to 640x360, encode JPEG q85, mean luma: the decode limit's unit of work."""
    pixels = cv2.imdecode(job.data, job.flag)
    if job.interpolation is not None:
        pixels = cv2.resize(pixels, (OUT_WIDTH, OUT_HEIGHT), interpolation=job.interpolation)
    ok, encoded = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    assert ok
    means = cv2.mean(pixels)
    return encoded.tobytes(), sum(w * m for w, m in zip(_LUMA_BGR, means, strict=False))


def pin_one_core() -> int:
    """Run this process on one CPU with OpenCV single-threaded; returns the CPU."""
    cpu = max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    cv2.setNumThreads(1)
    return cpu


def timed(work: Callable[[int], int], passes: int) -> tuple[float, float]:
    """(images/s, CPU-ms per image) of ``work(passes)``, which returns the images it did."""
    wall, cpu = time.perf_counter(), time.thread_time()
    images = work(passes)
    wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
    return images / wall, cpu * 1000 / images


def check_same_work(images: ImageSet, config: ProcessingConfig) -> float:
    """Largest brightness difference baseline vs FlowForge; fails unless every image is processed
    to a 640x360 JPEG by both."""
    worst = 0.0
    for data in images.payloads:
        encoded, luma = baseline(baseline_job(data))
        outcome = process_image(data, config)
        assert outcome.status == "processed", f"{images.name}: {outcome.status} {outcome.reason}"
        assert outcome.jpeg is not None
        assert (outcome.out_width, outcome.out_height) == (OUT_WIDTH, OUT_HEIGHT)
        out = cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_COLOR)
        assert out.shape[:2] == (OUT_HEIGHT, OUT_WIDTH)
        worst = max(worst, abs(luma - outcome.brightness))
    return worst


def extra_work(images: ImageSet, config: ProcessingConfig, passes: int = 5) -> str:
    """What process_image does beyond the baseline, timed alone (CPU-ms per image): header and
    completeness checks, and the quality scores (luma, contrast, Laplacian) at working size."""
    checks = scores = 0.0
    for _ in range(passes):
        for data in images.payloads:
            started = time.thread_time()
            header = read_header(data)
            check_complete(data, header)
            checked = time.thread_time()
            reduction = choose_reduction(header, OUT_WIDTH, OUT_HEIGHT, WORKING_AREA)
            working = working_image(decode(data, header, reduction).pixels)
            resized = time.thread_time()  # the working image is the output: not extra work
            luma_scores(working)
            scores += time.thread_time() - resized
            checks += checked - started
    count = passes * len(images.payloads)
    return (
        f"{images.name}: beyond the baseline, process_image spends "
        f"{checks * 1000 / count:.3f} ms/image on header and completeness checks and "
        f"{scores * 1000 / count:.3f} ms/image on the quality scores (luma, contrast, "
        "Laplacian at the working size), CPU, timed alone"
    )


def profile(images: ImageSet, config: ProcessingConfig, top: int = 7) -> str:
    """One note line: the functions process_image spends its own time in (cProfile), per image."""
    passes = 5
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(passes):
        for data in images.payloads:
            process_image(data, config)
    profiler.disable()
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    count = passes * len(images.payloads)
    ranked = sorted(stats.items(), key=lambda item: item[1][2], reverse=True)[:top]
    parts = []
    for (filename, _line, function), (_cc, _nc, own, _cum, _callers) in ranked:
        if filename == "~":  # a built-in: OpenCV's functions, struct, ...
            name = function.strip("{}<>").removeprefix("built-in method ")
        else:
            name = f"{Path(filename).stem}.{function}"
        parts.append(f"{name} {own * 1000 / count:.3f}")
    return f"{images.name}: cProfile of process_image, own time in ms/image: {', '.join(parts)}"


def measure(
    sets: list[ImageSet], config: ProcessingConfig, rounds: int, seconds: float
) -> dict[str, Figure]:
    figures: dict[str, Figure] = {}
    for images in sets:
        n = images.name
        figures[f"{n}_baseline_images_per_s"] = Figure(f"decode limit {n}", "images/s")
        figures[f"{n}_baseline_cpu_ms_per_image"] = Figure(f"decode limit {n} CPU", "ms/image")
        figures[f"{n}_flowforge_images_per_s"] = Figure(f"process_image {n}", "images/s")
        figures[f"{n}_flowforge_cpu_ms_per_image"] = Figure(f"process_image {n} CPU", "ms/image")
        figures[f"{n}_ratio"] = Figure(f"process_image / decode limit {n}, per CPU-s", "x")
        figures[f"{n}_wall_ratio"] = Figure(f"process_image / decode limit {n}, wall", "x")
    for images in sets:
        jobs = [baseline_job(data) for data in images.payloads]
        payloads = images.payloads

        def run_baseline(passes: int, jobs: list[BaselineJob] = jobs) -> int:
            for _ in range(passes):
                for job in jobs:
                    baseline(job)
            return passes * len(jobs)

        def run_flowforge(passes: int, payloads: list[bytes] = payloads) -> int:
            for _ in range(passes):
                for data in payloads:
                    process_image(data, config)
            return passes * len(payloads)

        rate, _ = timed(run_baseline, 1)  # warm-up, and the loop length
        passes = max(1, round(seconds * rate / len(jobs)))
        run_flowforge(1)
        for round_ in range(rounds):
            order = ("baseline", "flowforge") if round_ % 2 == 0 else ("flowforge", "baseline")
            rates, cpus = {}, {}
            for variant in order:
                runner = run_baseline if variant == "baseline" else run_flowforge
                rate, cpu_ms = timed(runner, passes)
                figures[f"{images.name}_{variant}_images_per_s"].add(rate)
                figures[f"{images.name}_{variant}_cpu_ms_per_image"].add(cpu_ms)
                rates[variant], cpus[variant] = rate, cpu_ms
            figures[f"{images.name}_ratio"].add(cpus["baseline"] / cpus["flowforge"])
            figures[f"{images.name}_wall_ratio"].add(rates["flowforge"] / rates["baseline"])
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=description(__doc__))
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds per set")
    parser.add_argument("--seconds", type=float, default=1.0, help="length of one timed loop")
    parser.add_argument("--images", type=int, default=40, help="distinct images per camera set")
    parser.add_argument("--quick", action="store_true", help="3 rounds of 0.3 s")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.seconds = 3, 0.3
    cpu = pin_one_core()
    config = processing_config(Settings.from_env({}))
    sets = [camera_set(1280, 720, args.images), camera_set(1920, 1080, args.images), photo_set()]
    notes = []
    for images in sets:
        worst = check_same_work(images, config)
        notes.append(
            f"{images.name}: {images.description}, {images.mean_kib:.0f} KiB average; "
            f"baseline and process_image mean luma differ by at most {worst:.2f}"
        )
    figures = measure(sets, config, args.rounds, args.seconds)
    for images in sets:
        notes.append(extra_work(images, config))
        if figures[f"{images.name}_ratio"].median < TARGET_RATIO:
            notes.append(profile(images, config))
    params = {
        "rounds": args.rounds,
        "seconds_per_loop": args.seconds,
        "cpu": cpu,
        "opencv": cv2.__version__,
        "processing_config": repr(config),
        "sets": {s.name: s.description for s in sets},
        "photos": sets[-1].files,
    }
    path = write("decode_limit", figures, params, notes)
    for figure in figures.values():
        print(figure.line())
    for note in notes:
        print(note)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
