# syntax=docker/dockerfile:1
# Multi-stage build: a static lifeboat binary on a distroless, non-root base.
# The image runs with a read-only root filesystem: lifeboat writes only to
# the volumes it is given (store path, keyring, scratch directories) and to
# $TMPDIR, which the Deployment mounts as an emptyDir.

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/lifeboat ./cmd/lifeboat

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/lifeboat /usr/local/bin/lifeboat
USER 65532:65532
ENV TMPDIR=/tmp
ENTRYPOINT ["/usr/local/bin/lifeboat"]
CMD ["--help"]
