# The tts image. Its twin is apptainer/tts.def: same base, same lock files, same code,
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

ENV TTS_HOST=0.0.0.0 \
    TTS_PORT=3003 \
    TTS_ENGINE=moshi \
    TTS_MODEL=kyutai/tts-1.6b-en_fr
COPY kit /app/kit
COPY services /app/services
WORKDIR /app
USER 1000
EXPOSE 3003
# start_period covers loading multi-GB weights from a cold cache.
HEALTHCHECK --interval=10s --timeout=5s --start-period=600s --retries=3 \
    CMD ["python", "-m", "kit.healthcheck", "--service", "tts", "--timeout", "4"]
ENTRYPOINT ["python", "-m", "services.tts"]
# Last, so that the per-image labels do not split the layers stt and tts share.
LABEL org.opencontainers.image.title="unmute-slurm-tts" \
      org.opencontainers.image.description="Kyutai TTS (moshi), Piper and espeak-ng (CPU) behind moshi-server's protocol" \
      org.opencontainers.image.source="https://github.com/unmute-slurm/unmute-slurm" \
      org.opencontainers.image.licenses="MIT"
