# The orchestrator image. Its twin is apptainer/orchestrator.def: same base, same lock files, same code,
# same environment and command (tests/containers/test_definitions.py keeps them equal,
# through tests/containers/parity.py).
#
# torch's PyPI wheels carry their own CUDA 12.8 runtime and cuDNN, so a plain Python base
# serves GPUs (the driver comes from the host via --gpus / --nv) without a second copy of
# CUDA in the image, and stt, tts and orchestrator share their base layers.
ARG BASE_IMAGE=python:3.11.14-slim-bookworm
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    HF_HOME=/data/hf \
    HF_HUB_OFFLINE=1

# A site behind a TLS-inspecting proxy passes its CA bundle as a build secret, which is
# never stored in a layer:
#   docker build --secret id=ca_bundle,src=/etc/ssl/certs/ca-certificates.crt ...
COPY containers/requirements/orchestrator.txt /tmp/orchestrator.txt
RUN --mount=type=secret,id=ca_bundle,required=false \
    set -eux; \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi; \
    python3 -m venv "$VIRTUAL_ENV"; \
    pip install --no-cache-dir --require-hashes -r /tmp/orchestrator.txt; \
    rm /tmp/orchestrator.txt; \
    useradd --uid 1000 --create-home --shell /usr/sbin/nologin unmute; \
    mkdir -p /data/hf; \
    chown 1000 /data/hf

# Smart Turn v3.2, the end-of-turn model of semantic_vad (BSD-2, 8 MB, sha256 pinned in the script).
COPY scripts/fetch-smart-turn.sh /opt/fetch-smart-turn.sh
RUN --mount=type=secret,id=ca_bundle,required=false \
    set -eux; \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi; \
    SMART_TURN_DIR=/opt/models/smart-turn-v3.2 PY=/opt/venv/bin/python bash /opt/fetch-smart-turn.sh; \
    rm /opt/fetch-smart-turn.sh

ENV ORCHESTRATOR_HOST=0.0.0.0 \
    ORCHESTRATOR_PORT=3004 \
    ORCHESTRATOR_TURN_MODEL_PATH=/opt/models/smart-turn-v3.2/smart-turn-v3.2-cpu.onnx
COPY kit /app/kit
COPY orchestrator /app/orchestrator
WORKDIR /app
USER 1000
EXPOSE 3004
# start_period covers loading multi-GB weights from a cold cache.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-m", "kit.healthcheck", "--service", "orchestrator", "--timeout", "4"]
ENTRYPOINT ["python", "-m", "orchestrator"]
# Last, so that the per-image labels do not split the layers stt and tts share.
LABEL org.opencontainers.image.title="unmute-slurm-orchestrator" \
      org.opencontainers.image.description="OpenAI-Realtime voice orchestrator and browser UI" \
      org.opencontainers.image.source="https://github.com/unmute-slurm/unmute-slurm" \
      org.opencontainers.image.licenses="MIT"
