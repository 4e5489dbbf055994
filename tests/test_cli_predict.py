"""``ssd predict`` and the seed's test_image.py / test_video.py / test_dataset.py on tiny inputs."""
from __future__ import annotations

import json
import os
from fractions import Fraction
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
import forked
from support import TinyFiles, assert_same_detections, model_flags, run_script, write_image

from ssd import Detector
from ssd.cli.main import main
from ssd.config import load_config
from ssd.data import build_dataset
from ssd.inference import detection_records, detections_of_records
from ssd.data.synth import COGNATA_CLASSES, draw_frame
from ssd.video import VideoReader, VideoWriter

FRAMES = 5


def api_records(files: TinyFiles, images: list[Path], batch_size: int = 4, **decode) -> list[list[dict]]:
    """The Python API's detections of ``images`` as ``ssd predict`` writes them (JSON round trip),
    in batches of the command's size (a batch's composition moves float rounding)."""
    detector = Detector.from_checkpoint(files.checkpoint, files.config, device="cpu", batch_size=batch_size, **decode)
    return json.loads(json.dumps([detection_records(result) for result in detector(images)]))


def test_image_boxes_drawn_and_saved_as_json(tiny_files: TinyFiles, tmp_path: Path, capsys):
    original = write_image(tmp_path / "street.png", (90, 150))
    output = tmp_path / "out.png"  # lossless, so untouched pixels compare equal
    flags = [*model_flags(tiny_files), "--input", str(tmp_path / "street.png"), "--output", str(output), "--max-boxes", "1", "--box-thickness", "3"]
    assert main(["predict", *flags]) == 0
    assert "wrote 1 image" in capsys.readouterr().out
    record = json.loads(output.with_suffix(".json").read_text())
    assert (record["height"], record["width"]) == (90, 150)
    (expected,) = api_records(tiny_files, [tmp_path / "street.png"], score_threshold=0.3, max_detections=1)  # predict's defaults
    assert record["detections"] == expected and len(expected) == 1
    detection = record["detections"][0]
    drawn = np.asarray(Image.open(output))
    x1, y1, x2, y2 = (int(round(v)) for v in detection["box"])
    changed = np.any(drawn != original, axis=2)
    inside = changed[max(y1, 0) : max(y2, 0) + 2, max(x1, 0) : max(x2, 0) + 2]
    assert inside.any(), "no pixel changed where the detection is"
    outside = changed.copy()
    outside[max(y1 - 3, 0) : max(y2 + 4, 0), max(x1 - 3, 0) : max(x2 + 4, 0)] = False
    caption = f"{detection['name']} {detection['score']:.2f}"  # drawn from the top-left corner, may overflow
    outside[max(y1, 0) : max(y1, 0) + 20, max(x1, 0) : max(x1, 0) + 8 * len(caption) + 8] = False
    assert not outside.any(), "pixels changed away from the only detection"


def test_seed_image_script_default_output(tiny_files: TinyFiles, tmp_path: Path):
    write_image(tmp_path / "frame.png", (64, 100))
    assert run_script("test_image.py", [*model_flags(tiny_files), "--input", str(tmp_path / "frame.png")]) == 0
    assert Image.open(tmp_path / "frame_prediction.jpg").size == (100, 64)
    record = json.loads((tmp_path / "frame_prediction.json").read_text())
    assert [record["detections"]] == api_records(tiny_files, [tmp_path / "frame.png"], score_threshold=0.3, max_detections=100)


def test_video_frames_in_frames_out(tiny_files: TinyFiles, tmp_path: Path, capsys):
    source = tmp_path / "drive.mp4"
    rng = np.random.default_rng(0)
    with VideoWriter(source, 96, 64, fps=10) as writer:
        for _ in range(FRAMES):
            writer.write(draw_frame(rng, 64, 96, COGNATA_CLASSES, (1, 3))[0])
    assert run_script("test_video.py", [*model_flags(tiny_files), "--input", str(source), "--cls-threshold", "0.2"]) == 0
    out = capsys.readouterr().out
    assert f"{FRAMES} frames in" in out and "frames/s" in out
    output = tmp_path / "drive_prediction.mp4"
    with VideoReader(output) as reader:
        assert (reader.info.width, reader.info.height) == (96, 64)
        assert len(list(reader)) == FRAMES
    record = json.loads(output.with_suffix(".json").read_text())
    assert [frame["frame"] for frame in record["frames"]] == list(range(FRAMES))
    with VideoReader(source) as reader:
        frames = list(reader)  # decoded as the command decodes them
    detector = Detector.from_checkpoint(tiny_files.checkpoint, tiny_files.config, device="cpu", score_threshold=0.2, max_detections=100)
    expected = json.loads(json.dumps([detection_records(result) for result in detector(frames)]))
    assert [frame["detections"] for frame in record["frames"]] == expected and any(expected)


@pytest.mark.parametrize("workers", ["0", "2"])
def test_folder_of_images(tiny_files: TinyFiles, tmp_path: Path, workers: str):
    folder = tmp_path / "shots"
    folder.mkdir()
    write_image(folder / "a.png", (70, 110), seed=1)
    write_image(folder / "b.jpg", (50, 80), seed=2)
    write_image(folder / "c.png", (60, 60), seed=3)
    (folder / "notes.txt").write_text("not an image")
    assert main(["predict", *model_flags(tiny_files), "--input", str(folder), "--batch-size", "2", "--num-workers", workers]) == 0
    output = tmp_path / "shots_prediction"
    assert sorted(p.name for p in output.iterdir()) == ["a.jpg", "b.jpg", "c.jpg", "detections.json", "detections.jsonl"]
    records = json.loads((output / "detections.json").read_text())
    assert [(r["height"], r["width"]) for r in records] == [(70, 110), (50, 80), (60, 60)]
    images = [folder / "a.png", folder / "b.jpg", folder / "c.png"]
    assert [r["detections"] for r in records] == api_records(tiny_files, images, 2, score_threshold=0.3, max_detections=100)
    header, *lines = [json.loads(line) for line in (output / "detections.jsonl").read_text().splitlines()]
    assert set(header) == {"ssd_prediction_log", "run"} and header["run"]["engine"] == "torch"
    assert all(line.pop("source") == [Path(line["image"]).stat().st_size, Path(line["image"]).stat().st_mtime_ns] for line in lines)
    assert sorted(lines, key=lambda r: r["image"]) == records  # the same records, written as they came


def image_folder(folder: Path, count: int) -> list[Path]:
    """``count`` generated 60x90 PNGs ``00.png``, ``01.png``... in a new ``folder``."""
    folder.mkdir()
    images = [folder / f"{k:02d}.png" for k in range(count)]
    for k, path in enumerate(images):
        write_image(path, (60, 90), seed=k)
    return images


@pytest.mark.hostile("faults of the machine")
def test_a_killed_folder_run_keeps_what_it_wrote_and_resumes(tiny_files: TinyFiles, tmp_path: Path, capsys):
    folder, output = tmp_path / "many", tmp_path / "out"
    images = image_folder(folder, 14)
    command = [str(Path(sys.executable).with_name("ssd")), "predict", *model_flags(tiny_files), "--input", str(folder),
               "--output", str(output), "--batch-size", "1", "--num-workers", "0"]
    process = forked.start(command, Path.cwd())  # this process's threads: its rounding
    log = output / "detections.jsonl"
    process.wait_until(lambda: log.is_file() and len(log.read_text().splitlines()) >= 4, 120)
    process.kill()
    complete = log.read_text().split("\n")[1:-1]  # after the run's header, without a last line the kill may have cut
    finished = [json.loads(line) for line in complete]
    assert 3 <= len(finished) < len(images), "the run was not killed midway"
    assert not (output / "detections.json").exists() and all(Path(r["output"]).is_file() for r in finished)
    kept = {r["output"]: Path(r["output"]).stat().st_mtime_ns for r in finished}
    with log.open("a") as handle:
        handle.write('{"image": "cut short by the ki')  # a line the kill could have cut
    assert main([*command[1:], "--resume"]) == 0
    assert f"({len(finished)} from the interrupted run)" in capsys.readouterr().out
    records = json.loads((output / "detections.json").read_text())
    assert [r["image"] for r in records] == [str(p) for p in images]
    assert [r["detections"] for r in records] == api_records(tiny_files, images, 1, score_threshold=0.3, max_detections=100)
    assert all(Path(output_path).stat().st_mtime_ns == mtime for output_path, mtime in kept.items())  # not redone
    assert not list(output.glob(".*.tmp"))
    lines = log.read_text().splitlines()[1:]
    cut = [line for line in lines if not line.endswith("}")]
    assert len(cut) == 1 and cut[0].endswith("cut short by the ki")  # the resumed records start lines of their own
    assert sorted(json.loads(line)["image"] for line in lines if line not in cut) == [str(p) for p in images]


def test_seed_dataset_script_draws_every_validation_image(tiny_files: TinyFiles, tmp_path: Path):
    output = tmp_path / "drawn"
    argv = [*model_flags(tiny_files), "--data-path", str(tiny_files.data), "--output", str(output), "--box-thickness", "1"]
    assert run_script("test_dataset.py", argv) == 0
    records = json.loads((output / "detections.json").read_text())
    val_set = build_dataset("cognata", tiny_files.data, "val", load_config(tiny_files.config))
    assert len(records) == len(val_set) >= 2 and all(Path(r["output"]).is_file() for r in records)
    images = [val_set.image_path(k) for k in range(len(val_set))]
    assert [r["detections"] for r in records] == api_records(tiny_files, images, score_threshold=0.5, max_detections=100)  # the script's defaults


def test_a_file_list_draws_its_images_in_its_order(tiny_files: TinyFiles, tmp_path: Path, capsys, monkeypatch):
    val_set = build_dataset("cognata", tiny_files.data, "val", load_config(tiny_files.config))
    chosen = [val_set.image_path(k) for k in (len(val_set) - 1, 0)]  # two of the split, last first
    listing = tmp_path / "val_set.csv"
    listing.write_text("img,label\n" + "".join(f"/{p.relative_to(tiny_files.data).as_posix()},x\n" for p in chosen))
    monkeypatch.chdir(tmp_path)  # the default output folder is made in the current folder
    flags = [*model_flags(tiny_files), "--dataset", "cognata", "--data-path", str(tiny_files.data), "--cls-threshold", "0.2"]
    assert main(["predict", *flags, "--file-list", str(listing)]) == 0
    output = tmp_path / f"{tiny_files.data.name}_val_set_prediction"
    records = json.loads((output / "detections.json").read_text())
    assert [r["image"] for r in records] == [str(p) for p in chosen]
    assert sorted(output.rglob("*.jpg")) == sorted((output / p.relative_to(tiny_files.data)).with_suffix(".jpg") for p in chosen)
    assert [r["detections"] for r in records] == api_records(tiny_files, chosen, score_threshold=0.2, max_detections=100)
    capsys.readouterr()
    for extra, expected in ((["--dataset", "coco", "--data-path", str(tmp_path)], "file lists are for Cognata"),
                            (["--input", str(chosen[0])], "a file list selects images of --dataset cognata")):
        assert main(["predict", *model_flags(tiny_files), *extra, "--file-list", str(listing)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err


def _other_anchors_config(tiny_files: TinyFiles, tmp_path: Path) -> Path:
    """The tiny config with other anchor scales: the same tensor shapes, other boxes."""
    text = tiny_files.config.read_text()
    assert "scales: [16, 32, 64]" in text
    path = tmp_path / "other_anchors.yaml"
    path.write_text(text.replace("scales: [16, 32, 64]", "scales: [20, 40, 64]"))
    return path


def test_a_checkpoint_of_another_config_runs_only_when_allowed_and_a_renamed_copy_is_the_same(tiny_files: TinyFiles, tmp_path: Path, capsys):
    write_image(tmp_path / "ok.png", (40, 60))
    flags = [*model_flags(tiny_files), "--input", str(tmp_path / "ok.png")]
    flags[1] = str(_other_anchors_config(tiny_files, tmp_path))
    assert main(["predict", *flags, "--output", str(tmp_path / "allowed.jpg"), "--allow-other-config"]) == 0
    renamed = tmp_path / "renamed.yaml"
    renamed.write_text(tiny_files.config.read_text())
    flags[1] = str(renamed)
    assert main(["predict", *flags, "--output", str(tmp_path / "renamed.jpg")]) == 0
    flags[1] = str(tiny_files.config)
    assert main(["predict", *flags, "--output", str(tmp_path / "original.jpg")]) == 0
    renamed_record, original_record = (json.loads((tmp_path / f"{name}.json").read_text()) for name in ("renamed", "original"))
    assert renamed_record["detections"] == original_record["detections"] and original_record["detections"]
    allowed = json.loads((tmp_path / "allowed.json").read_text())["detections"]  # other anchors: other boxes
    assert allowed and [d["box"] for d in allowed] != [d["box"] for d in original_record["detections"]]


@pytest.mark.parametrize(
    "problem", ["missing input", "fifo input", "unreadable video", "other config", "same shapes, other config", "missing checkpoint", "no checkpoint"]
)
def test_bad_input_is_one_error_line(problem: str, tiny_files: TinyFiles, tmp_path: Path, capsys):
    write_image(tmp_path / "ok.png", (40, 60))
    flags = [*model_flags(tiny_files), "--input", str(tmp_path / "ok.png")]
    if problem == "missing input":
        flags[-1], expected = str(tmp_path / "nope.png"), "input not found"
    elif problem == "fifo input":
        os.mkfifo(tmp_path / "pipe.png")
        flags[-1], expected = str(tmp_path / "pipe.png"), "pipe.png: not a regular file or a folder"
    elif problem == "unreadable video":
        (tmp_path / "clip.mp4").write_bytes(b"\x00garbage" * 64)
        flags[-1], expected = str(tmp_path / "clip.mp4"), "cannot read video"
    elif problem == "other config":
        flags[1], expected = "coco_300x300", "shape"
    elif problem == "same shapes, other config":
        flags[1] = str(_other_anchors_config(tiny_files, tmp_path))
        expected = "trained with config 'tiny', not 'other_anchors' (same tensor shapes, other geometry); give the config it was trained with"
    elif problem == "missing checkpoint":
        flags[3], expected = str(tmp_path / "none.pth"), "checkpoint not found"
    else:
        flags, expected = flags[:2] + flags[4:], "--pretrained-model"
    assert main(["predict", *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0]


def _frames(rng: np.random.Generator, count: int, height: int, width: int) -> list[np.ndarray]:
    return [draw_frame(rng, height, width, COGNATA_CLASSES, (1, 3))[0] for _ in range(count)]


def test_a_variable_frame_rate_video_keeps_its_timestamps(tiny_files: TinyFiles, tmp_path: Path):
    source, output = tmp_path / "vfr.mp4", tmp_path / "out.mp4"
    times_ms = [0, 40, 100, 130, 250, 251, 400]  # irregular, as a phone records when the light changes
    with VideoWriter(source, 96, 64, fps=10, time_base=Fraction(1, 1000)) as writer:
        for pixels, ms in zip(_frames(np.random.default_rng(1), len(times_ms), 64, 96), times_ms):
            writer.write(pixels, ms)
    assert main(["predict", *model_flags(tiny_files), "--input", str(source), "--output", str(output), "--cls-threshold", "0.2"]) == 0
    expected_times = [ms / 1000 for ms in times_ms]
    with VideoReader(output) as reader:
        assert [frame.time for frame in reader.frames()] == pytest.approx(expected_times, abs=1e-3)
    lines = [json.loads(line) for line in output.with_suffix(".jsonl").read_text().splitlines()[1:]]  # after the header
    assert [line["time"] for line in lines] == pytest.approx(expected_times, abs=1e-3) and [line["frame"] for line in lines] == list(range(7))
    record = json.loads(output.with_suffix(".json").read_text())
    assert [frame["detections"] for frame in record["frames"]] == [line["detections"] for line in lines]


def test_a_killed_video_run_resumes_without_running_the_network_on_its_logged_frames(tiny_files: TinyFiles, tmp_path: Path, monkeypatch, capsys):
    source, output = tmp_path / "drive.mp4", tmp_path / "out.mp4"
    with VideoWriter(source, 96, 64, fps=10) as writer:
        for pixels in _frames(np.random.default_rng(3), 7, 64, 96):
            writer.write(pixels)
    argv = ["predict", *model_flags(tiny_files), "--input", str(source), "--output", str(output), "--cls-threshold", "0.2", "--batch-size", "2"]
    assert main(argv) == 0
    full = json.loads(output.with_suffix(".json").read_text())["frames"]
    log = output.with_suffix(".jsonl")
    logged = log.read_text().splitlines()
    log.write_text("\n".join(logged[:4]) + "\n" + logged[4][:12])  # as a kill leaves it: the header, 3 frames, the 4th cut short,
    output.write_bytes(b"\x00half an mp4")  # the video unfinished
    output.with_suffix(".json").unlink()  # and no summary
    detected: list[int] = []
    real_call = Detector.__call__
    monkeypatch.setattr(Detector, "__call__", lambda self, images: detected.append(len(images)) or real_call(self, images))
    assert main([*argv, "--resume"]) == 0
    assert "(3 detected by the interrupted run)" in capsys.readouterr().out
    assert detected == [1, 2, 1]  # frame 3 (its batch's other frame was logged), 4-5, 6
    frames = json.loads(output.with_suffix(".json").read_text())["frames"]
    assert frames[:3] == full[:3] and [f["frame"] for f in frames] == list(range(7))
    for resumed, straight in zip(frames[3:], full[3:]):  # frame 3 ran in a batch of its own: float noise
        assert len(resumed["detections"]) == len(straight["detections"])
        if straight["detections"]:
            assert_same_detections(detections_of_records(resumed["detections"]), detections_of_records(straight["detections"]))
    assert [json.loads(line) for line in log.read_text().splitlines()[1:]] == frames
    with VideoReader(output) as reader:
        assert sum(1 for _ in reader.frames()) == 7
    other = tmp_path / "other.mp4"  # another video under the same --output: the log's header names another video
    with VideoWriter(other, 96, 64, fps=10, time_base=Fraction(1, 1000)) as writer:
        for pixels, ms in zip(_frames(np.random.default_rng(4), 7, 64, 96), range(0, 700, 100)):
            writer.write(pixels, ms)
    argv[argv.index(str(source))] = str(other)
    assert main([*argv, "--resume"]) == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("predicting:")]  # the bar ends its line
    assert len(err) == 1 and err[0] == f"error: {log}: written by another run (video_sha256 differ); resuming would mix the two runs' results", err


def test_a_rotated_video_with_audio_is_predicted_upright(tiny_files: TinyFiles, tmp_path: Path):
    """A phone's portrait video: stored landscape with a display matrix (FFmpeg's rotate=90) and an audio track."""
    source, output = tmp_path / "portrait.mp4", tmp_path / "out.mp4"
    upright = _frames(np.random.default_rng(2), 4, 96, 64)  # as displayed: 96 high, 64 wide
    container = av.open(str(source), "w")
    video = container.add_stream("libx264", rate=10)
    video.width, video.height, video.pix_fmt = 96, 64, "yuv420p"
    video.set_display_rotation(-90)  # av_display_rotation_get -90: shown turned 90 degrees clockwise
    audio = container.add_stream("aac", rate=44100)
    for k, pixels in enumerate(upright):
        stored = np.ascontiguousarray(np.rot90(pixels, k=1))  # turned left in the file
        frame = av.VideoFrame.from_ndarray(stored, format="rgb24").reformat(format="yuv420p")
        frame.pts = k
        container.mux(video.encode(frame))
    for k in range(8):
        sound = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        sound.sample_rate, sound.pts = 44100, k * 1024
        container.mux(audio.encode(sound))
    container.mux(video.encode(None))
    container.mux(audio.encode(None))
    container.close()
    assert main(["predict", *model_flags(tiny_files), "--input", str(source), "--output", str(output), "--cls-threshold", "0.2"]) == 0
    with VideoReader(output) as reader:
        assert (reader.info.width, reader.info.height, reader.info.rotation) == (64, 96, 0)
    with av.open(str(output)) as written:
        assert [stream.type for stream in written.streams] == ["video"]  # audio is not copied
    record = json.loads(output.with_suffix(".json").read_text())
    assert record["rotation"] == 90
    with VideoReader(source) as reader:
        decoded = [frame.pixels for frame in reader.frames()]
    assert decoded[0].shape == (96, 64, 3)
    assert np.abs(decoded[0].astype(int) - upright[0]).mean() < 8  # upright again (up to the codec's loss)
    detector = Detector.from_checkpoint(tiny_files.checkpoint, tiny_files.config, device="cpu", score_threshold=0.2, max_detections=100)
    expected = json.loads(json.dumps([detection_records(result) for result in detector(decoded)]))
    assert [frame["detections"] for frame in record["frames"]] == expected


def test_an_odd_sized_video_is_predicted_at_its_size(tiny_files: TinyFiles, tmp_path: Path):
    source, output = tmp_path / "odd.mkv", tmp_path / "out.mkv"
    container = av.open(str(source), "w")
    stream = container.add_stream("mjpeg", rate=5)
    stream.width, stream.height, stream.pix_fmt = 63, 47, "yuvj420p"
    for k, pixels in enumerate(_frames(np.random.default_rng(3), 3, 47, 63)):
        frame = av.VideoFrame.from_ndarray(pixels, format="rgb24").reformat(format="yuvj420p")
        frame.pts = k
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))
    container.close()
    assert main(["predict", *model_flags(tiny_files), "--input", str(source), "--output", str(output)]) == 0
    with VideoReader(output) as reader:
        assert (reader.info.width, reader.info.height) == (62, 46)  # the encoder's even size, rescaled
        assert len(list(reader)) == 3
    assert len(json.loads(output.with_suffix(".json").read_text())["frames"]) == 3


@pytest.mark.hostile("resume and caches")
def test_a_video_log_is_reused_up_to_its_first_line_that_is_not_a_frame_record(tmp_path: Path):
    from ssd.prediction_log import finished_video_frames, header_line

    good = {"box": [1.0, 2, 3.5, 4], "score": 0.5, "label": 3, "name": "car"}
    lines = [{"frame": 0, "pts": 0, "detections": [good]}, {"frame": 1, "pts": 1, "detections": []}]
    broken = [{"frame": 2, "detections": [{**good, "box": [1, 2, 3]}]}, {"frame": 2, "detections": [{**good, "label": True}]},
              {"frame": 2, "detections": [{**good, "score": "high"}]}, {"frame": 2, "detections": [{k: v for k, v in good.items() if k != "name"}]},
              {"frame": 3, "detections": []}, {"frame": 2, "detections": None}, [2]]
    log, run = tmp_path / "out.jsonl", {"video_sha256": "0" * 64}
    assert finished_video_frames(log, run) == []
    for bad in [*broken, {"frame": 2, "detections": [{**good, "score": float("nan")}]}]:
        log.write_text(header_line(run) + "".join(json.dumps(line) + "\n" for line in [*lines, bad, {"frame": 3, "detections": []}]))
        assert finished_video_frames(log, run) == lines, bad
    log.write_text(header_line(run) + "".join(json.dumps(line) + "\n" for line in [*lines, {"frame": 2, "detections": [good]}]))
    assert len(finished_video_frames(log, run)) == 3


@pytest.mark.parametrize(("cores", "workers"), [(1, 0), (2, 0), (3, 2), (64, 2)])
def test_folder_loader_workers_follow_the_usable_cores(cores: int, workers: int, monkeypatch):
    """Every core count on every machine: the affinity mask is simulated."""
    from ssd.prediction import default_workers

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)))
    assert default_workers() == workers


@pytest.mark.hostile("resume and caches")
def test_resume_continues_only_the_same_run_and_checks_what_it_reads(tiny_files: TinyFiles, tmp_path: Path, capsys):
    folder, output = tmp_path / "many", tmp_path / "out"
    images = image_folder(folder, 3)
    argv = ["predict", *model_flags(tiny_files), "--input", str(folder), "--output", str(output), "--batch-size", "1", "--num-workers", "0"]
    assert main(argv) == 0
    log = output / "detections.jsonl"
    complete = log.read_text()
    capsys.readouterr()

    other_checkpoint = tmp_path / "other.pth"
    other_checkpoint.write_bytes(tiny_files.checkpoint.read_bytes() + b"")  # the same weights under another name: still the same model
    renamed = [*argv, "--resume"]
    renamed[renamed.index(str(tiny_files.checkpoint))] = str(other_checkpoint)
    assert main(renamed) == 0 and "(3 from the interrupted run)" in capsys.readouterr().out
    cut = log.read_text().rstrip("\n")
    log.write_text(cut)  # as a kill may leave it: another run's resume may not even end its last line
    for flags, differing in ((["--cls-threshold", "0.4"], "decode"), (["--box-thickness", "3"], "drawing")):
        before = {p.name: p.stat().st_mtime_ns for p in output.iterdir()}
        assert main([*argv, *flags, "--resume"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"error: {log}: written by another run ({differing} differ); resuming would mix the two runs' results"], err
        assert {p.name: p.stat().st_mtime_ns for p in output.iterdir()} == before and log.read_text() == cut  # nothing written

    lines = complete.splitlines()
    edited = json.loads(lines[2])
    edited["detections"] = [{"box": [0, 0, 1, 1], "score": float("nan"), "label": 1, "name": "x"}]  # not a detection
    log.write_text("\n".join([lines[0], lines[1], json.dumps(edited), lines[3]]) + "\n")
    write_image(images[2], (60, 90), seed=9)  # the third input changed since it was logged
    os.utime(images[2], ns=(1, 1))
    assert main([*argv, "--resume"]) == 0
    assert "(1 from the interrupted run)" in capsys.readouterr().out  # the second and third done again
    records = json.loads((output / "detections.json").read_text())
    assert [r["detections"] for r in records] == api_records(tiny_files, images, 1, score_threshold=0.3, max_detections=100)

    log.write_text("\n".join(lines[1:]) + "\n")  # records without the header that says what produced them
    assert main([*argv, "--resume"]) == 2
    assert f"error: {log}: not a log of an `ssd predict` run that says what produced it" in capsys.readouterr().err
