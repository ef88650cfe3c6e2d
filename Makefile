# snapshot-job: build, test, demo, benchmark.
#
# Every tool the tests need is pinned here and installed into .tools/
# (ignored by git); nothing has to be installed by hand.

SHELL        := bash
GO           ?= go
TOOLS        := $(CURDIR)/.tools
VERSION      ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT       ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS      := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
# disable_grpc_modules leaves out the Google storage client's gRPC
# DirectPath (xDS, RLS): the job speaks its JSON API only, and they are a
# quarter of the binary (docs/providers/gcs.md, binary size).
BUILD_TAGS   := disable_grpc_modules
BIN          := bin/snapshot-job

VERSITYGW_VERSION := v1.8.0
FAKE_GCS_VERSION  := v1.56.1
AZURITE_DIR       := tools/azurite
VERSITYGW         := $(TOOLS)/bin/versitygw
FAKE_GCS          := $(TOOLS)/bin/fake-gcs-server
AZURITE           := $(AZURITE_DIR)/node_modules/.bin/azurite-blob
# Debian's packages the tests run, as command:package, installed when a
# command is missing (as root; otherwise the target names what to install):
# etcd for the control plane, the Pushgateway the metrics tests push to, the
# age CLI and zstd that show standard tools read what the job wrote, bsdtar
# (libarchive-tools) for frames written without checksums.
DEBIAN_TOOLS := etcd:etcd-server prometheus-pushgateway:prometheus-pushgateway \
	age:age age-keygen:age zstd:zstd bsdtar:libarchive-tools

# The control plane the chart's scenarios run on: kube-apiserver,
# kube-controller-manager and kubectl built from k8s.io/kubernetes (the
# tools/kube module pins it; its go.mod must require this same version), and
# Debian's etcd. Cached in .tools/kube/<version>: a new version builds anew.
KUBE_VERSION      := v1.34.3
KUBE_DIR          := $(TOOLS)/kube/$(KUBE_VERSION)
KUBE_STAMP        := $(KUBE_DIR)/.built
KUBE_MINOR        := $(word 2,$(subst ., ,$(KUBE_VERSION)))
# Helm reads the server's version to check the chart's kubeVersion; without
# these a library build reports v0.0.0-master.
KUBE_LDFLAGS      := -s -w \
	-X k8s.io/component-base/version.gitVersion=$(KUBE_VERSION) \
	-X k8s.io/component-base/version.gitMajor=1 \
	-X k8s.io/component-base/version.gitMinor=$(KUBE_MINOR) \
	-X k8s.io/component-base/version.gitTreeState=clean

export GOTOOLCHAIN := local

.PHONY: all build test lint tools kube-tools k8s-test demo bench bench-mem bench-defaults bench-seek bench-clean image clean fuzz chart-test soak debian-tools

all: build

build: $(BIN)

$(BIN): $(shell find cmd internal -name '*.go' -not -name '*_test.go') go.mod go.sum
	CGO_ENABLED=0 $(GO) build -trimpath -tags '$(BUILD_TAGS)' -ldflags '$(LDFLAGS)' -o $@ ./cmd/snapshot-job

## tools: install the pinned test servers into .tools/ and tools/azurite/,
## and DEBIAN_TOOLS when missing
tools: $(VERSITYGW) $(FAKE_GCS) $(AZURITE) debian-tools

$(VERSITYGW):
	GOBIN=$(TOOLS)/bin $(GO) install github.com/versity/versitygw/cmd/versitygw@$(VERSITYGW_VERSION)

$(FAKE_GCS):
	GOBIN=$(TOOLS)/bin $(GO) install github.com/fsouza/fake-gcs-server@$(FAKE_GCS_VERSION)

$(AZURITE): $(AZURITE_DIR)/package.json $(AZURITE_DIR)/package-lock.json
	cd $(AZURITE_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

## kube-tools: build the pinned control plane into .tools/kube/ (about ten
## minutes on two cores, once per version) and install etcd (DEBIAN_TOOLS) when missing
kube-tools: $(KUBE_STAMP) debian-tools

$(KUBE_STAMP):
	@v=$$(cd tools/kube && $(GO) list -m -f '{{.Version}}' k8s.io/kubernetes) && \
	  test "$$v" = "$(KUBE_VERSION)" || { echo "tools/kube/go.mod requires k8s.io/kubernetes $$v, the Makefile pins $(KUBE_VERSION)"; exit 1; }
	cd tools/kube && CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(KUBE_LDFLAGS)' -o $(KUBE_DIR)/ \
	  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kubectl
	touch $@

debian-tools:
	@missing=$$(for t in $(DEBIAN_TOOLS); do command -v $${t%%:*} >/dev/null || echo $${t#*:}; done | sort -u | xargs); \
	test -z "$$missing" || { \
	  test "$$(id -u)" = 0 || { echo "missing Debian packages: apt-get install $$missing (as root)"; exit 1; }; \
	  echo "installing $$missing"; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; }

## k8s-test: the chart on a real control plane (etcd, kube-apiserver,
## kube-controller-manager on 127.0.0.1) with a node stand-in that runs the
## real binary for each Pod; helm install, kubectl create job --from=cronjob
## and every failure path, against versitygw
k8s-test: tools kube-tools
	cd test/chart && KUBE_BIN_DIR=$(KUBE_DIR) ETCD=$$(command -v etcd) \
	  $(GO) test -count=1 -timeout 30m ./kube/...

## lint: formatting and vet
lint:
	@test -z "$$(gofmt -l cmd internal bench scripts)" || { gofmt -l cmd internal bench scripts; echo "gofmt needed"; exit 1; }
	$(GO) vet ./...

## test: everything CI runs, in stages that say what they run (tools,
## lint, chart tests, the chart on a control plane, go test, fuzz), ending with "N passed, N failed,
## N skipped" and the list of failures (scripts/test.sh; go test's JSON is
## summarised by scripts/testsum). The test servers are installed on first
## use: versitygw in .tools/bin, Azurite in tools/azurite/node_modules.
TESTSUM := $(TOOLS)/bin/testsum
test:
	@echo "==> [1/6] tools: versitygw $(VERSITYGW_VERSION) and fake-gcs-server $(FAKE_GCS_VERSION) in .tools/bin, Azurite in $(AZURITE_DIR)/node_modules, the Kubernetes $(KUBE_VERSION) control plane in .tools/kube (built once, about ten minutes), and the Debian packages etcd-server, prometheus-pushgateway, age, zstd, libarchive-tools (installed once)"
	@$(MAKE) -s --no-print-directory tools kube-tools
	@CGO_ENABLED=0 $(GO) build -o $(TESTSUM) ./scripts/testsum
	@GO=$(GO) TOOLS=$(TOOLS) TESTSUM=$(TESTSUM) FUZZTIME=$(FUZZTIME) FUZZ_TARGETS='$(FUZZ_TARGETS)' \
	  KUBE_BIN_DIR=$(KUBE_DIR) ./scripts/test.sh

## fuzz: run every fuzz target for FUZZTIME each (seed corpora in testdata/;
## scripts/fuzz.sh says what counts as a finding)
FUZZTIME ?= 5s
FUZZ_TARGETS := \
	./internal/archive:FuzzExtract ./internal/archive:FuzzExtractRaw ./internal/archive:FuzzFrameDecoder \
	./internal/archive:FuzzOpenIndex ./internal/archive:FuzzIndexRecords \
	./internal/setting:FuzzParseSize ./internal/setting:FuzzParseDuration ./internal/config:FuzzLoad \
	./internal/snapname:FuzzParse ./internal/retention:FuzzPlan ./internal/retention:FuzzMatch
fuzz:
	GO=$(GO) FUZZTIME=$(FUZZTIME) FUZZ_LOGS=$(TOOLS) ./scripts/fuzz.sh $(FUZZ_TARGETS)

## chart-test: helm lint, strict rendering, Dockerfile lint, pod-contract and
## end-to-end tests of charts/snapshot-job without a cluster (k8s-test runs
## the chart on one). A separate Go module (test/chart) keeps helm and
## k8s.io/api out of the binary's module graph.
chart-test: tools
	@test -z "$$(gofmt -l test/chart)" || { gofmt -l test/chart; echo "gofmt needed"; exit 1; }
	cd test/chart && $(GO) vet ./... && $(GO) test -count=1 -timeout 20m $$($(GO) list ./... | grep -v '/test/chart/kube$$')

## soak: back-to-back backup+prune cycles against versitygw with random
## faults (SOAK_CYCLES=50, SOAK_SEED to reproduce a run)
soak: tools
	$(GO) test -tags soak -count=1 -timeout 60m -run TestSoak -v ./cmd/snapshot-job

## demo: back up a sample tree into a local store, list, verify, restore, compare
demo: $(BIN)
	./scripts/demo.sh

## bench: snapshot-job against the aws cli, rclone and restic on one local
## versitygw, one table with medians, MiB/s, peak RSS and the targets
## (docs/performance.md). Installs missing Debian tools (apt-get) when run as root.
BENCH_SIZE        ?= 1GiB
BENCH_RUNS        ?= 3
BENCH_DIR         ?= $(TOOLS)/bench
BENCH_SERVER_DIR  ?=
BENCH_ENV         ?=
BENCH_ONLY        ?=
BENCH_STRICT      ?=
BENCH_MEM_SIZES   ?= 1GiB,4GiB
BENCH_SEEK_SIZES  ?= 1GiB,4GiB
BENCH_LEVELS      ?= fastest,default
BENCH_CONCURRENCY ?= 2,4,8
BENCH_PART_SIZES  ?= 8MiB,16MiB,32MiB
BENCH_RUNNER      := $(TOOLS)/bin/bench-run
GENDATA           := $(TOOLS)/bin/gendata
BENCH_FLAGS = -size '$(BENCH_SIZE)' -runs '$(BENCH_RUNS)' -dir '$(BENCH_DIR)' -results '$(TOOLS)/bench' \
	-server-dir '$(BENCH_SERVER_DIR)' \
	-env '$(BENCH_ENV)' -only '$(BENCH_ONLY)' $(if $(BENCH_STRICT),-strict) \
	-bin '$(BIN)' -gendata '$(GENDATA)' -versitygw '$(VERSITYGW)'

bench: $(BIN) $(VERSITYGW) bench-bin
	$(BENCH_RUNNER) -mode table $(BENCH_FLAGS)
	$(BENCH_RUNNER) -mode seek -seek-sizes '$(BENCH_SEEK_SIZES)' $(BENCH_FLAGS)

## bench-seek: the seekable-snapshot rows of make bench alone (files, a
## one-folder restore, tmpfs restores on 1 and all cores, HTTPS, age, the
## index's cost) at BENCH_SEEK_SIZES, bytes counted by a proxy
bench-seek: $(BIN) $(VERSITYGW) bench-bin
	$(BENCH_RUNNER) -mode seek -seek-sizes '$(BENCH_SEEK_SIZES)' $(BENCH_FLAGS)

## bench-mem: peak RSS of snapshot-job at 1 GiB and 4 GiB and their ratio
bench-mem: $(BIN) $(VERSITYGW) bench-bin
	$(BENCH_RUNNER) -mode mem -mem-sizes '$(BENCH_MEM_SIZES)' $(BENCH_FLAGS)

## bench-defaults: snapshot-job over levels x concurrency x part sizes
bench-defaults: $(BIN) $(VERSITYGW) bench-bin
	$(BENCH_RUNNER) -mode matrix -levels '$(BENCH_LEVELS)' -concurrency '$(BENCH_CONCURRENCY)' \
		-part-sizes '$(BENCH_PART_SIZES)' $(BENCH_FLAGS)

.PHONY: bench-bin
bench-bin:
	CGO_ENABLED=0 $(GO) build -o $(BENCH_RUNNER) ./bench/run
	CGO_ENABLED=0 $(GO) build -o $(GENDATA) ./bench/gendata

## bench-clean: remove the cached datasets, logs and results
bench-clean:
	rm -rf $(BENCH_DIR)/dataset-* $(BENCH_DIR)/run-* $(BENCH_DIR)/logs $(TOOLS)/bench

## image: build the container image (needs a Docker engine; none runs in CI)
image:
	docker build --build-arg VERSION=$(VERSION) --build-arg COMMIT=$(COMMIT) -t snapshot-job:$(VERSION) .

clean:
	rm -rf bin demo
