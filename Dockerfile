# One image for every Atelier process (web, workers, signer, scheduler, flower); docker-compose.yml
# picks the process with `command:`.
#
#   docker build -t atelier .
#   docker build -t atelier-gpu --build-arg TORCH_SPEC="torch==2.13.0" .
#
# TORCH_SPEC is word-split on purpose so it can carry pip options. On PyPI the Linux x86_64
# `torch==2.13.0` wheel is the CUDA build (it brings its CUDA libraries as pip packages; the host
# only needs the NVIDIA driver and container toolkit). For a slim CPU-only image:
#   --build-arg TORCH_SPEC="--index-url https://download.pytorch.org/whl/cpu torch==2.13.0"
# and for one specific CUDA, the matching index, e.g. .../whl/cu128.
FROM python:3.11-slim

ARG TORCH_SPEC="torch==2.13.0"

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    ATELIER_MEDIA_ROOT=/data/media \
    ATELIER_VAR_DIR=/data/var \
    ATELIER_JOBS_DIR=/data/jobs \
    PYTHONPATH=/app

# The /data folders belong to the runtime user, so named volumes mounted there start out writable.
RUN groupadd --system --gid 10001 atelier \
 && useradd --system --uid 10001 --gid atelier --create-home --home-dir /home/atelier atelier \
 && mkdir -p /data/media /data/var /data/models /data/jobs \
 && chown -R atelier:atelier /data

WORKDIR /app

# CJK glyphs for labels drawn into images (the X/Y/Z plot's grid: a Chinese prompt or axis value);
# without them Pillow falls back to DejaVu, which has none.
RUN apt-get update \
 && apt-get install -y --no-install-recommends fonts-noto-cjk \
 && rm -rf /var/lib/apt/lists/*

# torch first and pinned: left to the resolver, a torch range pulls whatever build is newest.
# Its own layer, so source changes do not reinstall it.
RUN pip install ${TORCH_SPEC}

# Everything .dockerignore lets through: pyproject.toml, README.md, manage.py, webapp/, apps/,
# workers/, templates/, static/, locale/, contracts/, deploy/.
COPY . .

# The install brings the dependencies; the code itself runs from /app (PYTHONPATH) so that
# settings find templates/, static/ and the rest next to manage.py. The source stays root-owned.
RUN pip install . \
 && pip install --no-deps 'spandrel==0.4.2' \
 && rm -rf build ./*.egg-info

USER atelier

EXPOSE 8000

CMD ["sh", "/app/deploy/start-web.sh"]
