"""The demo's Video tab: caps on size and length with clear errors, the annotated video, the timeline
plot and CSV, the service's cached recognizers, and the ``/analyze_video`` API through ``gradio_client``."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import pytest
from synthetic import frame_count
from test_timeline import COLUMNS, SIDE, crossing_frames, read_csv, write_avi

from feredge.demo import clips
from feredge.demo.clips import MAX_CLIP_SECONDS, ClipError, analyze_clip, check_clip
from feredge.demo.service import DemoRequestError, DemoService
from feredge.edge import timeline, video

# The clip pipeline needs only `pip install .` (.ci/run also runs those tests in an edge-only venv);
# the test through gradio_client needs the demo extra.
edge = pytest.mark.edge


@pytest.fixture(scope="module")
def service(tiny_models: dict[str, Path]) -> DemoService:
    return DemoService({"int8": tiny_models["int8"], "float16": tiny_models["float16"]})


@pytest.fixture(scope="module")
def clip(face_drawer, tmp_path_factory) -> Path:
    """Two drawn faces crossing: 10 frames at 10 frames/s."""
    return write_avi(tmp_path_factory.mktemp("clips") / "crossing.avi", crossing_frames(face_drawer(SIDE), frames=10))


@edge
def test_a_clip_gives_an_annotated_video_a_timeline_and_its_plot(service, clip):
    pytest.importorskip("matplotlib")
    result = analyze_clip(service, clip, "my clip.avi", "int8", "haar", 1, detect_every=2)
    assert result.video.suffix == ".webm" and frame_count(result.video) == 10
    assert result.video.name == "my clip_annotated.webm"
    header, rows = read_csv(result.timeline)
    assert header == COLUMNS and {int(row["frame"]) for row in rows} == set(range(10))
    assert result.plot is not None and result.plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result.status.startswith("**2 faces tracked** in 10 frames")
    assert "detector every 2 frames; model `int8`, detector `haar`" in result.status
    assert result.status.count("\n- track ") == 2


@edge
def test_without_matplotlib_the_clip_still_gives_the_video_and_the_timeline(service, clip, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    result = analyze_clip(service, clip, "clip.avi", "int8")
    assert result.plot is None and result.video.is_file() and result.timeline.is_file()
    assert result.status.endswith("The timeline plot needs matplotlib (`pip install 'feredge[demo]'`).")


@edge
def test_the_clip_runs_on_the_services_cached_recognizer(service, clip, monkeypatch):
    with service.recognizer() as cached:
        pass
    used = []
    process = timeline.process_video
    monkeypatch.setattr(timeline, "process_video", lambda recognizer, *a, **k: used.append(recognizer) or process(
        recognizer, *a, **k
    ))  # fmt: skip
    before = service.pool_sizes()
    analyze_clip(service, clip, "clip.avi")
    assert used == [cached] and service.pool_sizes() == before


@edge
def test_progress_follows_the_frames(service, clip):
    seen = []
    analyze_clip(
        service, clip, "clip.avi", "int8", "haar", 1, on_progress=lambda done, total: seen.append((done, total))
    )
    assert seen == [(i, 10) for i in range(1, 11)]


@edge
def test_size_cap_is_checked_first(clip):
    with pytest.raises(ClipError, match=r"^clip\.avi: \d+ KB, larger than the 1 KB limit for a clip$"):
        check_clip(clip, "clip.avi", max_bytes=2**10)


@edge
def test_sizes_are_readable():
    assert (clips.human_size(45_000), clips.human_size(10 * 2**20), clips.human_size(3 * 2**19)) == (
        "44 KB",
        "10 MB",
        "1.5 MB",
    )


@edge
def test_length_cap(face_drawer, tmp_path):
    long = write_avi(tmp_path / "long.avi", crossing_frames(face_drawer(SIDE), frames=24), fps=1.0)
    with pytest.raises(ClipError, match=rf"long\.avi: 24\.0 s long; the demo takes clips up to {MAX_CLIP_SECONDS:g} s"):
        check_clip(long, "long.avi", max_bytes=2**30)
    info = check_clip(long, "long.avi", max_bytes=2**30, max_seconds=30)
    assert (info.frames, info.fps, info.seconds, info.width, info.height) == (24, 1.0, 24.0, 320, 240)


@edge
def test_a_clip_without_a_frame_rate_is_stamped_at_the_fallback_and_not_refused_by_a_guess(clip, monkeypatch):
    class NoRate:  # a container that gives its frame count but no frame rate
        def __init__(self, capture) -> None:
            self.capture = capture

        def get(self, prop: int) -> float:
            return 0.0 if prop == cv2.CAP_PROP_FPS else self.capture.get(prop)

        def __getattr__(self, name: str):
            return getattr(self.capture, name)

    monkeypatch.setattr(clips, "open_capture", lambda source: NoRate(video.open_capture(source)))
    info = check_clip(clip, "clip.avi", max_bytes=2**30, max_seconds=0.1)  # 10 frames: 0.4 s at the fallback
    assert (info.frames, info.fps, info.rate_reported, info.seconds) == (10, video.FALLBACK_FPS, False, None)


@edge
@pytest.mark.parametrize("content", [b"", b"not a video\n" * 100], ids=["empty", "text"])
def test_a_file_that_is_not_a_video(tmp_path, content):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(content)
    with pytest.raises(ClipError, match=r"^holiday\.mp4: not a video this demo can read"):
        check_clip(junk, "holiday.mp4", max_bytes=2**20)


@edge
def test_bad_choices_are_refused(service, clip):
    with pytest.raises(DemoRequestError, match="unknown model"):
        analyze_clip(service, clip, "clip.avi", model="nope")


@edge
def test_old_output_folders_are_removed(tmp_path, monkeypatch):
    monkeypatch.setattr(clips, "WORK_ROOT", tmp_path)
    monkeypatch.setattr(clips, "KEEP_OUTPUTS_S", 0.0)
    first = clips._fresh_folder()
    (first / "a.csv").write_text("x")
    second = clips._fresh_folder()
    assert not first.exists() and second.is_dir()


def test_gradio_client_calls_the_analyze_video_api(demo_server, clip, tmp_path: Path) -> None:
    pytest.importorskip("gradio")
    from gradio_client import Client, handle_file

    url, _ = demo_server
    client = Client(url, verbose=False)
    annotated, plot, table, status = client.predict(
        handle_file(str(clip)), "int8", "haar", 1, 2, api_name="/analyze_video"
    )
    annotated = annotated["video"] if isinstance(annotated, dict) else annotated
    assert Path(annotated).suffix == ".webm" and frame_count(Path(annotated)) == 10
    assert Path(plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    header, rows = read_csv(Path(table))
    assert header == COLUMNS and len({row["track_id"] for row in rows}) == 2
    assert status.startswith("**2 faces tracked** in 10 frames")

    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video\n" * 100)
    annotated, plot, table, status = client.predict(
        handle_file(str(junk)), "int8", "haar", 1, 3, api_name="/analyze_video"
    )
    assert (annotated, plot, table) == (None, None, None)
    assert status.startswith("**Error:** junk.mp4: not a video this demo can read")
