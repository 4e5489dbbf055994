# The ssd toolkit on a CUDA PyTorch image, with the `ssd` command and the seed's scripts.
#
#   docker build -t ssd .
#   docker run --gpus all --rm -it --ipc=host -v /path/to/cognata:/cognata -v /path/to/trained_models:/trained_models ssd
#   (inside) torchrun --nproc_per_node=8 train.py --dataset Cognata --data-path /cognata --save-folder /trained_models ...
#
# NOT BUILT OR TESTED: the development environment has neither Docker nor network access. The base
# tag below follows pytorch/pytorch's naming for the torch pin of pyproject.toml (2.14.1) but was not
# checked to exist; pass another with --build-arg BASE_IMAGE=... (pip installs the pinned torch anyway).
ARG BASE_IMAGE=pytorch/pytorch:2.14.1-cuda12.8-cudnn9-runtime
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /workspace/ssd

# PyAV, ONNX Runtime and Pillow wheels bundle FFmpeg and the codecs: no system packages needed.
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install . && ssd --help > /dev/null

COPY train.py evaluate.py model_summary.py test_dataset.py test_image.py test_video.py ./

CMD ["ssd", "--help"]
