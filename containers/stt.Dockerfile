# The stt image. Its twin is apptainer/stt.def: same base, same lock files, same code,
# same environment and command (tests/containers/test_definitions.py keeps them equal,
# through tests/containers/parity.py).
#
# torch's PyPI wheels carry their own CUDA 12.8 runtime and cuDNN, so a plain Python base
# serves GPUs (the driver comes from the host via --gpus / --nv) without a second copy of
# CUDA in the image, and stt, tts and orchestrator share their base layers.
ARG BASE_IMAGE=python:3.11.14-slim-bookworm
FROM ${BASE_IMAGE}

# NO_TORCH_COMPILE: torch.compile's Triton backend builds a C launcher at run time and these
# images carry no compiler on purpose, so moshi's compiled helpers stay eager.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    HF_HOME=/data/hf \
    HF_HUB_OFFLINE=1 \
    NO_TORCH_COMPILE=1

# A site behind a TLS-inspecting proxy passes its CA bundle as a build secret, which is
# never stored in a layer:
#   docker build --secret id=ca_bundle,src=/etc/ssl/certs/ca-certificates.crt ...
# (No `# syntax=` line: it makes BuildKit fetch its Dockerfile frontend from Docker Hub;
# the built-in frontend already has RUN --mount.)
# The torch + moshi layer is the tts image's, byte for byte, so the two share it.
COPY containers/requirements/tts.txt /tmp/tts.txt
RUN --mount=type=secret,id=ca_bundle,required=false \
    set -eux; \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi; \
    python3 -m venv "$VIRTUAL_ENV"; \
    pip install --no-cache-dir --require-hashes -r /tmp/tts.txt; \
    rm /tmp/tts.txt; \
    useradd --uid 1000 --create-home --shell /usr/sbin/nologin unmute; \
    mkdir -p /data/hf; \
    chown 1000 /data/hf
COPY containers/requirements/stt.txt /tmp/stt.txt
RUN --mount=type=secret,id=ca_bundle,required=false \
    set -eux; \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi; \
    pip install --no-cache-dir --require-hashes -r /tmp/stt.txt; \
    rm /tmp/stt.txt

ENV STT_HOST=0.0.0.0 \
    STT_PORT=3001 \
    STT_ENGINE=moshi \
    STT_MODEL=kyutai/stt-1b-en_fr
COPY kit /app/kit
COPY services /app/services
WORKDIR /app
USER 1000
EXPOSE 3001
# start_period covers loading multi-GB weights from a cold cache.
HEALTHCHECK --interval=10s --timeout=5s --start-period=600s --retries=3 \
    CMD ["python", "-m", "kit.healthcheck", "--service", "stt", "--timeout", "4"]
ENTRYPOINT ["python", "-m", "services.stt"]
# Last, so that the per-image labels do not split the layers stt and tts share.
LABEL org.opencontainers.image.title="unmute-slurm-stt" \
      org.opencontainers.image.description="Kyutai STT (moshi) and Whisper (CPU) behind moshi-server's protocol" \
      org.opencontainers.image.source="https://github.com/unmute-slurm/unmute-slurm" \
      org.opencontainers.image.licenses="MIT"
