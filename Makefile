# lifeboat — build, test, lint, bench.
#
#   make image   the OCI image (bin/image, an OCI layout) and its SBOM, no container engine needed
#   make testbin build the servers the tests start (kube-apiserver, etcd, versitygw,
#                local-kms, vault) into bin/, each only if missing
#   make test    testbin, vet, unit, conformance and real-server tests (race detector), short fuzz runs
#   make build   the static binary into bin/lifeboat
#   make lint    gofmt and go vet
#   make bench   benchmarks: envelope throughput, pipeline ratio, peak RSS of a 1 GiB stream,
#                S3 upload vs the AWS SDK, rewrap of 1 MiB vs 64 MiB backups, idle `serve`
#                RSS and CPU; last, one table written to docs/performance.md: etcd backup,
#                restore and drill beside etcdctl, etcdutl and restic (installs restic),
#                rewrap of 10,000 backups (local keyring, Vault), 20k-object export vs kubectl
#
# Everything a target needs is built here and cached under bin/ (git-ignored).

GO        ?= go
BIN       := $(CURDIR)/bin
PKGS      := ./...
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
# Fuzz targets run by `make test`: package:target:executions, a few
# seconds each here. Counts, not durations: a duration-based -fuzztime
# races Go's fuzz coordinator at its deadline and fails with a bare
# "context deadline exceeded" (golang/go#75804, fixed only in Go 1.27).
FUZZ      := ./internal/config:FuzzParse:20000x ./internal/envelope:FuzzParseHeader:100000x ./internal/envelope:FuzzDecrypt:80000x ./internal/source/etcd:FuzzSnapshotCodec:100000x

# Servers the tests start, each built from its own pinned module in
# e2e/testbin/<module>. Heavy builds run one at a time.
# The Prometheus Operator release whose CRDs (ServiceMonitor,
# PrometheusRule) the deploy test installs; v0.85.0 is the newest the module
# proxy serves (v0.86.0 and v0.87.0 are refused). Keep internal/testenv's
# PrometheusOperatorVersion equal.
PROMETHEUS_OPERATOR := v0.85.0

TESTBIN   := kube-apiserver kubectl etcd etcdctl etcdutl versitygw local-kms vault promtool

.PHONY: all build test unit fuzz lint vet fmt-check bench clean testbin image
.NOTPARALLEL:

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/lifeboat ./cmd/lifeboat

test: testbin chromium vet unit fuzz

# The status page test (internal/server) drives Debian's chromium headless.
.PHONY: chromium
chromium:
	@command -v chromium >/dev/null || (apt-get update && apt-get install -y --no-install-recommends chromium)

# The embedded default end to end on this machine: a source cluster (etcd +
# kube-apiserver, Secrets encrypted at rest) seeded through the Kubernetes
# API, a backup, then a drill that restores it into a scratch cluster and
# prints the RTO/RPO table with PASS/FAIL. Builds what it needs first.
# DEMO_FLAGS="--keep" leaves the scratch cluster up; "--dir DIR" picks the
# work directory.
.PHONY: demo
demo: build testbin
	$(BIN)/lifeboat demo $(DEMO_FLAGS)

testbin: $(addprefix $(BIN)/,$(TESTBIN))

# The OCI image, built without a container engine (internal/image, the
# reference; the Dockerfile makes the same layout with Docker): FROM
# scratch, user 65532, lifeboat with the kube-apiserver and Vault its
# in-cluster drills start (the static builds testbin makes), CA
# certificates; written as an OCI layout in bin/image with its CycloneDX
# SBOM in bin/image.cdx.json. Load it with `skopeo copy oci:bin/image ...`
# or `podman load`.
image: testbin
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/image-lifeboat ./cmd/lifeboat
	rm -rf $(BIN)/image $(BIN)/image.cdx.json
	$(GO) run ./cmd/mkimage --lifeboat $(BIN)/image-lifeboat --kube-apiserver $(BIN)/kube-apiserver --vault $(BIN)/vault \
		--version $(VERSION) --revision "$$(git rev-parse HEAD 2>/dev/null)" --ref lifeboat:$(VERSION) --out $(BIN)/image

# `make bin/vault` and the like, as the tests' error messages suggest.
bin/%: $(BIN)/% ;

$(BIN)/kube-apiserver: e2e/testbin/kube-apiserver/go.mod e2e/testbin/kube-apiserver/go.sum
	@echo "building kube-apiserver (about 4 minutes on 2 cores; cached in bin/)"
	cd e2e/testbin/kube-apiserver && CGO_ENABLED=0 $(GO) build -trimpath -o $@ k8s.io/kubernetes/cmd/kube-apiserver

# kubectl renders deploy/base in its test (`kubectl kustomize`) and is the
# peer of the side-by-side manifests export in `make bench` (about a minute).
$(BIN)/kubectl: e2e/testbin/kubectl/go.mod e2e/testbin/kubectl/go.sum
	cd e2e/testbin/kubectl && $(GO) build -trimpath -o $@ k8s.io/kubernetes/cmd/kubectl

# promtool checks and unit-tests deploy/components/monitoring's alerts; the
# same step fetches the Prometheus Operator CRDs the deploy test installs.
$(BIN)/promtool: e2e/testbin/promtool/go.mod e2e/testbin/promtool/go.sum
	@echo "building promtool (about 2 minutes once modules are downloaded)"
	cd e2e/testbin/promtool && $(GO) build -trimpath -o $@ github.com/prometheus/prometheus/cmd/promtool
	cd e2e/testbin/promtool && $(GO) mod download github.com/prometheus-operator/prometheus-operator@$(PROMETHEUS_OPERATOR)

$(BIN)/etcd: e2e/testbin/etcd/go.mod e2e/testbin/etcd/go.sum
	cd e2e/testbin/etcd && $(GO) build -trimpath -o $@ go.etcd.io/etcd/server/v3

$(BIN)/etcdctl: e2e/testbin/etcd/go.mod e2e/testbin/etcd/go.sum
	cd e2e/testbin/etcd && $(GO) build -trimpath -o $@ go.etcd.io/etcd/etcdctl/v3

$(BIN)/etcdutl: e2e/testbin/etcd/go.mod e2e/testbin/etcd/go.sum
	cd e2e/testbin/etcd && $(GO) build -trimpath -o $@ go.etcd.io/etcd/etcdutl/v3

$(BIN)/versitygw: e2e/testbin/versitygw/go.mod e2e/testbin/versitygw/go.sum
	cd e2e/testbin/versitygw && $(GO) build -trimpath -o $@ github.com/versity/versitygw/cmd/versitygw

$(BIN)/local-kms: e2e/testbin/local-kms/go.mod e2e/testbin/local-kms/go.sum
	cd e2e/testbin/local-kms && $(GO) build -trimpath -o $@ github.com/nsmithuk/local-kms

$(BIN)/vault: e2e/testbin/vault/go.mod e2e/testbin/vault/go.sum
	@echo "building vault (about a minute once modules are downloaded)"
	cd e2e/testbin/vault && CGO_ENABLED=0 $(GO) build -trimpath -tags minimal -o $@ github.com/hashicorp/vault

unit:
	$(GO) test -race -count=1 $(PKGS)

fuzz:
	@set -e; for f in $(FUZZ); do \
		pkg=$$(echo $$f | cut -d: -f1); target=$$(echo $$f | cut -d: -f2); n=$$(echo $$f | cut -d: -f3); \
		echo "fuzz $$pkg $$target ($$n)"; \
		$(GO) test $$pkg -run '^$$' -fuzz "^$$target$$" -fuzztime $$n; \
	done

lint: fmt-check vet

vet:
	$(GO) vet $(PKGS)

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# Each peak-RSS benchmark runs in its own process so the peak is its own.
bench: testbin build restic $(BIN)/kubectl
	$(GO) test -run '^$$' -bench 'Encrypt|Decrypt|PipelineRatio' -benchtime 3x ./internal/envelope
	$(GO) test -run '^$$' -bench 'Stream1GiB' -benchtime 1x ./internal/envelope
	$(GO) test -run '^$$' -bench 'Put$$' -benchtime 3x ./internal/store/fs
	$(GO) test -run '^$$' -bench 'Put1GiB/lifeboat' -benchtime 3x ./internal/store/s3
	$(GO) test -run '^$$' -bench 'Put1GiB/sdk' -benchtime 3x ./internal/store/s3
	$(GO) test -run '^$$' -bench 'Rewrap$$|RewrapRatio' -benchtime 3x ./internal/rotation
	$(GO) test -run '^$$' -bench 'ServeIdle' -benchtime 1x ./cmd/lifeboat
	# Audit webhook: events/s with the WAL fsynced per batch and sealing
	# beside it, against a receiver that keeps nothing (docs/audit.md).
	$(GO) test -run '^$$' -bench 'Webhook' -benchtime 500x ./internal/audit
	# Last, as one table also written to docs/performance.md: etcd backup,
	# restore and drill beside etcdctl, etcdutl and restic at 256 MiB,
	# 1 GiB and 2 GiB, then keys rotate of 10,000 backups (keyring and
	# Vault) and the manifests export of 20,200 objects beside kubectl.
	$(GO) run ./e2e/bench -bin $(BIN) -out docs/performance.md

# restic is a peer of `make bench` only (Debian's package).
.PHONY: restic
restic:
	@command -v restic >/dev/null || (apt-get update && apt-get install -y --no-install-recommends restic)

clean:
	rm -rf $(BIN)
