# Evergreen build. `make run` and `make test` are the two set-up commands.
SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
BUILDINFO := github.com/evergreen-edge/evergreen/services/kit/buildinfo
LDFLAGS := -s -w -X $(BUILDINFO).Version=$(VERSION) -X $(BUILDINFO).Commit=$(COMMIT)
export CGO_ENABLED := 0
TOOLS := $(CURDIR)/.tools/bin
MODULES := proto services/kit services certmgr deployagent broker shadow streammgr runtime ota tools
# Pinned tool versions (from the Go module proxy; no protoc download).
BUF_VERSION := v1.75.0
PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.1
STATICCHECK_VERSION := v0.7.0

.PHONY: all build run test test-short lint bench proto proto-check tools compose-up compose-down image clean examples release

all: build

build:
	@mkdir -p bin
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/ggd ./services/cmd/ggd
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/ggctl ./tools/cmd/ggctl
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/ggd-containerd ./runtime/cmd/ggd-containerd

run: build
	./bin/ggd --root ./var

# The example functions that need building (examples/echo-go).
examples:
	$(GO) build -trimpath -o examples/echo-go/function/echo-go ./examples/echo-go

# Every test of every module, with the race detector (race needs cgo).
# The integration tests exec bin/ggd and bin/ggctl, so build them first.
test: build tools
	@set -e; for m in $(MODULES); do \
		echo "== $$m"; \
		(cd $$m && CGO_ENABLED=1 PATH="$(TOOLS):$$PATH" EVERGREEN_BIN="$(CURDIR)/bin" $(GO) test -race -count=1 -timeout 15m ./...); \
	done

test-short: build
	@set -e; for m in $(MODULES); do (cd $$m && EVERGREEN_BIN="$(CURDIR)/bin" $(GO) test -short -count=1 ./...); done

lint:
	@set -e; for m in $(MODULES); do (cd $$m && $(GO) vet ./...); done
	@if GOBIN=$(TOOLS) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) 2>/dev/null; then \
		set -e; for m in $(MODULES); do (cd $$m && $(TOOLS)/staticcheck ./...); done; \
	else echo "staticcheck could not be installed from the module proxy; go vet only"; fi

bench: build
	$(GO) run ./tools/cmd/ggbench --bin ./bin

tools: $(TOOLS)/buf $(TOOLS)/protoc-gen-go $(TOOLS)/protoc-gen-go-grpc

$(TOOLS)/buf:
	GOWORK=off GOBIN=$(TOOLS) CGO_ENABLED=0 $(GO) install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
$(TOOLS)/protoc-gen-go:
	GOWORK=off GOBIN=$(TOOLS) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
$(TOOLS)/protoc-gen-go-grpc:
	GOWORK=off GOBIN=$(TOOLS) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)

proto: tools
	cd proto && PATH="$(TOOLS):$$PATH" buf lint && PATH="$(TOOLS):$$PATH" buf generate

image: build
	docker build -f deploy/docker/Dockerfile -t evergreen:dev .

compose-up: image
	docker-compose up -d
	@echo "waiting for every service to be healthy..."; \
	for i in $$(seq 1 60); do \
		if [ -z "$$(docker-compose ps -q)" ]; then sleep 1; continue; fi; \
		if ! docker-compose ps | grep -qE 'starting|unhealthy|Exit'; then docker-compose ps; exit 0; fi; sleep 1; \
	done; docker-compose ps; exit 1

compose-down:
	docker-compose down -v

# An over-the-air update bundle of this tree (docs/ota.md): the three
# programs for linux/GOARCH (default: this machine's) built into
# DIST/VERSION-ARCH/, packed by ggctl into
# DIST/evergreen-VERSION-linux-ARCH.tar.gz, and signed when OTA_SIGNING_KEY
# names a private key from `ggctl ota keygen`. bin/ggctl, which packs and
# signs, is built for this machine whatever GOARCH says. Entries are dated
# by the last commit (SOURCE_DATE_EPOCH), so a clean tree bundles the same
# bytes on any machine.
DIST ?= dist
RELEASE_ARCH = $(or $(GOARCH),$(shell $(GO) env GOHOSTARCH))
RELEASE_DIR = $(DIST)/$(VERSION)-$(RELEASE_ARCH)
RELEASE_BUNDLE = $(DIST)/evergreen-$(VERSION)-linux-$(RELEASE_ARCH).tar.gz

release:
	@mkdir -p bin $(RELEASE_DIR)
	GOOS= GOARCH= $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/ggctl ./tools/cmd/ggctl
	GOOS=linux GOARCH=$(RELEASE_ARCH) $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(RELEASE_DIR)/ggd ./services/cmd/ggd
	GOOS=linux GOARCH=$(RELEASE_ARCH) $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(RELEASE_DIR)/ggctl ./tools/cmd/ggctl
	GOOS=linux GOARCH=$(RELEASE_ARCH) $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(RELEASE_DIR)/ggd-containerd ./runtime/cmd/ggd-containerd
	SOURCE_DATE_EPOCH="$${SOURCE_DATE_EPOCH:-$$(git log -1 --format=%ct 2>/dev/null)}" \
		bin/ggctl ota bundle --version '$(VERSION)' --os linux --arch $(RELEASE_ARCH) --bin $(RELEASE_DIR) --out $(RELEASE_BUNDLE)
	@if [ -n "$(OTA_SIGNING_KEY)" ]; then \
		echo "bin/ggctl ota sign $(RELEASE_BUNDLE) --key $(OTA_SIGNING_KEY)"; \
		bin/ggctl ota sign $(RELEASE_BUNDLE) --key "$(OTA_SIGNING_KEY)"; \
	else \
		echo "not signed: bin/ggctl ota sign $(RELEASE_BUNDLE) --key KEY signs it (or make release OTA_SIGNING_KEY=KEY)"; \
	fi
	@echo "bundle $(RELEASE_BUNDLE): $$(wc -c < $(RELEASE_BUNDLE)) bytes"

clean:
	rm -rf bin dist
