# syntax=docker/dockerfile:1
# The same image `make image` builds without a container engine (that one,
# internal/image, is the reference; deploy/README.md): FROM scratch, user
# 65532, lifeboat with the kube-apiserver and Vault its in-cluster drills
# start, all static, and CA certificates. The root filesystem is read-only
# in the Deployment: lifeboat writes only to $TMPDIR (an emptyDir).

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY . .
ARG VERSION=dev
ENV CGO_ENABLED=0
RUN go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/usr/local/bin/lifeboat ./cmd/lifeboat
RUN cd e2e/testbin/kube-apiserver && go build -trimpath -o /out/usr/local/bin/kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver
RUN cd e2e/testbin/vault && go build -trimpath -tags minimal -o /out/usr/local/bin/vault github.com/hashicorp/vault
RUN mkdir -p /out/etc/ssl/certs /out/home/nonroot /out/tmp && chmod 1777 /out/tmp && \
    cp /etc/ssl/certs/ca-certificates.crt /out/etc/ssl/certs/ && \
    printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > /out/etc/passwd && \
    printf 'root:x:0:\nnonroot:x:65532:\n' > /out/etc/group && \
    chown 65532:65532 /out/home/nonroot && chmod 0700 /out/home/nonroot

FROM scratch
COPY --from=build /out/ /
USER 65532:65532
WORKDIR /home/nonroot
ENV PATH=/usr/local/bin HOME=/home/nonroot SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    LIFEBOAT_KUBE_APISERVER=/usr/local/bin/kube-apiserver LIFEBOAT_VAULT=/usr/local/bin/vault
EXPOSE 8080
LABEL org.opencontainers.image.title=lifeboat \
      org.opencontainers.image.source=https://github.com/lifeboat-dr/lifeboat
ENTRYPOINT ["/usr/local/bin/lifeboat"]
CMD ["serve", "--config", "/etc/lifeboat"]
