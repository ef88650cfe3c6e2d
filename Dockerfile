# syntax=docker/dockerfile:1
#
# snapshot-job container image: one static binary on distroless, run as
# UID/GID 65532. Build with `make image`, which passes VERSION and COMMIT:
#   docker build --build-arg VERSION=v1.2.3 --build-arg COMMIT=abc1234 -t snapshot-job:v1.2.3 .
# Multi-arch: docker buildx build --platform linux/amd64,linux/arm64 ...
#
# Base images are pinned by tag. For releases, pin them by digest too
# (image@sha256:...) and let a bot (Renovate/Dependabot) bump both.

# build compiles the static binary natively and cross-compiles for the target.
FROM --platform=$BUILDPLATFORM golang:1.26.8-bookworm AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-buildvcs=false
# Dependencies first: this layer survives source changes.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY cmd/ cmd/
COPY internal/ internal/
ARG TARGETOS TARGETARCH
ARG VERSION=dev
ARG COMMIT=unknown
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -tags disable_grpc_modules \
      -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" \
      -o /out/snapshot-job ./cmd/snapshot-job

# runtime is the binary alone on distroless: no shell, no package manager.
FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
ARG COMMIT=unknown
LABEL org.opencontainers.image.title="snapshot-job" \
      org.opencontainers.image.description="Back up and restore a snapshot volume to S3 or Azure Blob" \
      org.opencontainers.image.source="https://github.com/snapshot-job/snapshot-job" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}"
COPY --from=build /out/snapshot-job /usr/local/bin/snapshot-job
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/snapshot-job"]
