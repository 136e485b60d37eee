# syntax=docker/dockerfile:1
#
# The bids-eeg2fmri image (README.md, "Containers and HPC").
#
#   docker build -t bids-eeg2fmri:dev --build-arg IMAGE_TAG=bids-eeg2fmri:dev .
#   docker build -t bids-eeg2fmri:dev-cuda --build-arg VARIANT=cuda \
#                --build-arg IMAGE_TAG=bids-eeg2fmri:dev-cuda .
#
# Build arguments:
#   VARIANT     cpu (default): TensorFlow for CPUs.
#               cuda: tensorflow[and-cuda], whose pip wheels bring CUDA, cuDNN and NCCL;
#               the host needs only the NVIDIA driver (docker run --gpus all,
#               apptainer run --nv). It runs on CPUs too, only larger.
#   IMAGE_TAG   the name:tag the image is published under. Every run records it in the
#               output's dataset_description.json (GeneratedBy[0].Container.Tag).
#   VERSION, VCS_REF, BUILD_DATE, SOURCE_URL
#               OCI labels (org.opencontainers.image.*).
#   PIP_CERT    a CA bundle (PEM) for pip, for networks behind a TLS-intercepting proxy:
#               its path inside the build. Hand the file in as the build secret
#               "ca-bundle" and name it, e.g.
#                 docker build --secret id=ca-bundle,src=/etc/ssl/certs/ca-certificates.crt \
#                              --build-arg PIP_CERT=/run/secrets/ca-bundle .
#               (podman/buildah take the same two options). The bundle is not stored
#               in the image.
#   BASE_IMAGE  a Debian 12 image (default debian:bookworm-slim).
#
# The network is needed while building only (Debian packages, then PyPI); the image runs
# with --network none. There is no USER: docker/podman run -u "$(id -u):$(id -g)" works
# for any uid (HOME is writable by all), and rootless podman maps root to the caller.

ARG BASE_IMAGE=debian:bookworm-slim

# --------------------------------------------------------------------------------------
# base: Debian's Python 3.11 and nothing else (shared by the builder and the image)
FROM ${BASE_IMAGE} AS base
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Debian stable only takes security fixes into a release: pinning exact package
# versions would break the build at each point release without making it more stable.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 \
    && rm -rf /var/lib/apt/lists/*

# --------------------------------------------------------------------------------------
# builder: a virtual environment with the dependencies and the project's wheel
FROM base AS builder
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3-venv \
    && rm -rf /var/lib/apt/lists/*

ARG VARIANT=cpu
ARG PIP_CERT=
ENV VIRTUAL_ENV=/opt/bids-eeg2fmri \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN case "$VARIANT" in cpu|cuda) ;; \
        *) echo "VARIANT must be cpu or cuda, not '$VARIANT'" >&2; exit 1 ;; esac \
    && python3 -m venv "$VIRTUAL_ENV"
WORKDIR /src

# The dependencies first, read from pyproject.toml: this layer is reused while only the
# code changes. The cuda variant adds the CUDA wheels of the TensorFlow version installed.
COPY pyproject.toml ./
RUN --mount=type=secret,id=ca-bundle \
    if [ -z "$PIP_CERT" ]; then unset PIP_CERT; \
    elif [ ! -r "$PIP_CERT" ]; then \
        echo "PIP_CERT=$PIP_CERT is not readable in the build (see the Dockerfile header)" >&2; \
        exit 1; \
    fi \
    && python3 -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"], sep="\n")' \
        > /tmp/requirements.txt \
    && "$VIRTUAL_ENV/bin/pip" install -r /tmp/requirements.txt \
    && if [ "$VARIANT" = cuda ]; then \
        tf_version=$("$VIRTUAL_ENV/bin/python" -c 'from importlib.metadata import version; print(version("tensorflow"))') \
        && "$VIRTUAL_ENV/bin/pip" install "tensorflow[and-cuda]==$tf_version"; \
    fi \
    && rm /tmp/requirements.txt

# Then the project, as a wheel (build isolation fetches setuptools; nothing is compiled).
COPY README.md ./
COPY bids_eeg2fmri ./bids_eeg2fmri
RUN --mount=type=secret,id=ca-bundle \
    if [ -z "$PIP_CERT" ]; then unset PIP_CERT; fi \
    && "$VIRTUAL_ENV/bin/pip" wheel --no-deps --wheel-dir /tmp/wheels . \
    && "$VIRTUAL_ENV/bin/pip" install --no-deps /tmp/wheels/bids_eeg2fmri-*.whl \
    && "$VIRTUAL_ENV/bin/pip" check \
    && rm -rf /tmp/wheels

# --------------------------------------------------------------------------------------
# the image: Python, the virtual environment, no compilers, no pip caches, no sources
FROM base AS image
ARG BASE_IMAGE
ARG VARIANT=cpu
ARG IMAGE_TAG=bids-eeg2fmri:local
ARG VERSION=dev
ARG VCS_REF=unknown
ARG BUILD_DATE=unknown
ARG SOURCE_URL=https://github.com/bids-eeg2fmri/bids-eeg2fmri

LABEL org.opencontainers.image.title="bids-eeg2fmri" \
      org.opencontainers.image.description="BIDS-App that synthesizes fMRI from EEG (TensorFlow, ${VARIANT})" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${VCS_REF}" \
      org.opencontainers.image.created="${BUILD_DATE}" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.url="${SOURCE_URL}" \
      org.opencontainers.image.documentation="${SOURCE_URL}#containers-and-hpc" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.ref.name="${IMAGE_TAG}" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"

COPY --from=builder /opt/bids-eeg2fmri /opt/bids-eeg2fmri

# Runtime environment:
# - the image's own name, for dataset_description.json (bids_eeg2fmri.bidsio.derivatives);
# - one BLAS/OpenMP thread per process by default: the workflow runs --nprocs processes,
#   and --omp-nthreads sets the threads of each;
# - no network at run time: no version checks (nipype, deno);
# - HOME writable by any uid (docker -u; with --read-only, mount a tmpfs there);
#   USER/LOGNAME answer getpass.getuser() for uids that /etc/passwd does not know.
ENV PATH=/opt/bids-eeg2fmri/bin:$PATH \
    BIDS_EEG2FMRI_CONTAINER_TYPE=docker \
    BIDS_EEG2FMRI_CONTAINER_TAG=${IMAGE_TAG} \
    OMP_NUM_THREADS=1 \
    OPENBLAS_NUM_THREADS=1 \
    MKL_NUM_THREADS=1 \
    TF_CPP_MIN_LOG_LEVEL=1 \
    NIPYPE_NO_ET=1 \
    DENO_NO_UPDATE_CHECK=1 \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/bids-eeg2fmri \
    USER=bids-eeg2fmri \
    LOGNAME=bids-eeg2fmri

RUN mkdir -m 1777 "$HOME" \
    && bids-eeg2fmri --version

WORKDIR /tmp
ENTRYPOINT ["bids-eeg2fmri"]
CMD ["--help"]
