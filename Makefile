# lifeboat — build, test, lint, bench.
#
#   make test    vet, unit and conformance tests (race detector), short fuzz runs
#   make build   the static binary into bin/lifeboat
#   make lint    gofmt and go vet
#   make bench   benchmarks: envelope throughput, pipeline ratio, peak RSS of a 1 GiB stream
#
# Everything a target needs is built here and cached under bin/ (git-ignored).

GO        ?= go
BIN       := $(CURDIR)/bin
PKGS      := ./...
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
FUZZTIME  ?= 5s
# Fuzz targets run by `make test`: package:target.
FUZZ      := ./internal/config:FuzzParse ./internal/envelope:FuzzParseHeader ./internal/envelope:FuzzDecrypt

.PHONY: all build test unit fuzz lint vet fmt-check bench clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/lifeboat ./cmd/lifeboat

test: vet unit fuzz

unit:
	$(GO) test -race -count=1 $(PKGS)

fuzz:
	@set -e; for f in $(FUZZ); do \
		pkg=$${f%%:*}; target=$${f##*:}; \
		echo "fuzz $$pkg $$target ($(FUZZTIME))"; \
		$(GO) test $$pkg -run '^$$' -fuzz "^$$target$$" -fuzztime $(FUZZTIME); \
	done

lint: fmt-check vet

vet:
	$(GO) vet $(PKGS)

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

bench:
	$(GO) test -run '^$$' -bench 'Encrypt|Decrypt|PipelineRatio' -benchtime 3x ./internal/envelope
	$(GO) test -run '^$$' -bench 'Stream1GiB' -benchtime 1x ./internal/envelope
	$(GO) test -run '^$$' -bench . -benchtime 3x ./internal/store/...

clean:
	rm -rf $(BIN)
