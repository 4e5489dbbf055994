"""The accuracy cost of each CPU engine and precision, as mAP on a small model trained here.

Trains a 96x96 SSDLite on generated shapes (the recipe of ``tests/test_learning.py``), exports it,
quantizes it to INT8 (``ssd export --int8``, calibrated on training images) and scores every
engine on the same held-out images: PyTorch fp32 (the reference side) and under bfloat16 autocast,
ONNX Runtime and OpenVINO on the float32 export, OpenVINO in bf16 where the CPU has it natively,
and both engines on the INT8 model. MLPerf's accuracy rule for a default: mAP at least 99.9 % of
fp32's, i.e. a drop of at most 0.1 % of it.

Run: .venv/bin/python benchmarks/bench_quantized_accuracy.py [--images 400] [--epochs 20] [--calibration 32] [--work-dir DIR]
(with ``--work-dir``, a model trained there before is reused)
"""
from __future__ import annotations

import common  # noqa: F401  first: it turns huge pages on before torch loads (and puts tests/ on the path)

import argparse
import sys
import tempfile
from pathlib import Path

from ssd.cli.main import main as ssd_main
from ssd.config import load_config
from ssd.data.kinds import build_dataset
from ssd.data.synth import synth_coco
from ssd.evaluation import detections_to_coco, score_detections
from ssd.errors import SSDError
from ssd.inference import Detector
from support import LEARNING_YAML, learning_argv

MLPERF_RULE = 0.999  # a default keeps at least 99.9 % of fp32's mAP
SIZE = (96, 96)


def train(root: Path, data: Path, config: Path, epochs: int) -> Path:
    """``ssd train`` with the learning test's recipe; the last checkpoint (one already there is reused)."""
    out = root / "run"
    if (out / "last.pth").is_file():
        return out / "last.pth"
    code = ssd_main(learning_argv(config, data, out, epochs))
    if code:
        raise SystemExit(f"training failed (exit {code})")
    return out / "last.pth"


def mean_ap(detector: Detector, dataset) -> float:
    """COCO mAP of ``detector`` over every image of ``dataset``."""
    outputs, ids = [], []
    for index in range(len(dataset)):
        image, size = dataset.network_input(index, detector.preprocess)
        outputs += detector.detect(image[None], [size])
        ids.append(int(dataset.annotations.image_ids[index]))
    detections = detections_to_coco(outputs, ids, dataset.category_of_label)
    return score_detections(dataset.coco_ground_truth(), detections, ids).stats[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400, help="generated images (every fifth held out)")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--calibration", type=int, default=32, help="training images to calibrate INT8 on")
    parser.add_argument("--work-dir", type=Path, help="keep the data and model here (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = args.work_dir or Path(folder)
        data, config_path = root / "data", root / "small.yaml"
        if not data.is_dir():
            synth_coco(data, args.images, size=SIZE, seed=0, objects=(1, 2), object_size=(0.3, 0.6))
        config_path.write_text(LEARNING_YAML)
        checkpoint = train(root, data, config_path, args.epochs)
        fp32, int8 = root / "fp32.onnx", root / "int8.onnx"
        common = ["--config", str(config_path), "--pretrained-model", str(checkpoint)]
        for arguments in (["--output", str(fp32)], ["--output", str(int8), "--int8", "--dataset", "coco", "--data-path", str(data),
                                                    "--split", "train", "--count", str(args.calibration)]):
            if ssd_main(["export", *common, *arguments]):
                raise SystemExit("export failed")
        config = load_config(config_path)
        held_out = build_dataset("coco", data, "val", config)
        torch_map = mean_ap(Detector.from_checkpoint(checkpoint, config, device="cpu", batch_size=1), held_out)
        print(f"{'engine':<22} mAP     vs PyTorch fp32   default-eligible (MLPerf 99.9 %)")
        print(f"{'torch fp32':<22} {torch_map:.4f}  1.0000")
        runs = [("torch bf16", lambda: Detector.from_checkpoint(checkpoint, config, device="cpu", batch_size=1, precision="bf16"))]
        for engine in ("onnxruntime", "openvino"):
            for name, path, precision in (("fp32", fp32, "fp32"), ("bf16", fp32, "bf16"), ("int8", int8, "fp32")):
                if precision == "bf16" and engine == "onnxruntime":
                    continue  # ONNX Runtime runs the file as stored
                runs.append((f"{engine} {name}", lambda e=engine, f=path, p=precision: Detector.from_onnx(
                    f, config, batch_size=1, device="cpu", engine=e, precision=p)))
        for name, make in runs:
            try:
                detector = make()
            except SSDError as exc:  # OpenVINO bf16 on a CPU without native bfloat16
                print(f"{name:<22} not run: {exc}")
                continue
            value = mean_ap(detector, held_out)
            print(f"{name:<22} {value:.4f}  {value / torch_map:.4f}            {value >= MLPERF_RULE * torch_map}", flush=True)

if __name__ == "__main__":
    sys.exit(main())
