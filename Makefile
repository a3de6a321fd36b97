# Swell's developer entry points. `make help` lists them.
SHELL := /usr/bin/env bash
GO ?= go
SWELL_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/swell
export SWELL_TESTBIN ?= $(SWELL_CACHE)/bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/swell-autoscaler/swell/internal/version.Version=$(VERSION)
# e2e suites start real components; keep them one package at a time on small machines.
E2E_PARALLEL ?= 1

.PHONY: help
help: ## list targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*?## "}{printf "  %-12s %s\n", $$1, $$2}'

.PHONY: build
build: ## build bin/swell (the product binary)
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/swell ./cmd/swell

.PHONY: build-dev
build-dev: build ## build bin/swell-dev, the local demo (links the test environment; never shipped)
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/swell-dev ./cmd/swell-dev

.PHONY: testbin
testbin: ## install Debian packages and build/cache the test binaries and tools
	bash hack/testbin.sh

.PHONY: testbin-demo
testbin-demo: ## only what `make demo` needs: redis and tmux, etcd, the Kubernetes control plane, kwok
	bash hack/testbin.sh demo

.PHONY: test
test: ## everything CI runs: test binaries, lint, unit and e2e tests, with phase times
	@bash hack/phases.sh testbin lint test-unit test-python test-e2e

.PHONY: test-unit
test-unit: ## unit tests (no external components)
	$(GO) test -count=1 $$($(GO) list ./... | grep -v -e /test/e2e -e /internal/testenv)

.PHONY: test-python
test-python: ## Python SDK tests (Debian python3-kubernetes, -redis, -pika; real redis-server and rabbitmq-server)
	cd sdk/python && /usr/bin/python3 -m unittest discover -s tests -t . -v

.PHONY: test-e2e
test-e2e: ## end-to-end tests against real components started on loopback
	$(GO) test -count=1 -p $(E2E_PARALLEL) -timeout 75m -v ./internal/testenv/... ./test/e2e/... 2>&1 | tee .e2e.log | grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic|e2e:|\s+\S+_test.go)' ; exit $${PIPESTATUS[0]}

.PHONY: bench
bench: ## run Go benchmarks (printed figures; no pass/fail on speed)
	$(GO) test -run '^$$' -bench . -benchmem ./...

.PHONY: lint
lint: ## gofmt, go vet and golangci-lint
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) vet ./...
	$(SWELL_TESTBIN)/golangci-lint run ./...

.PHONY: generate
generate: ## regenerate code (deepcopy, CRDs, RBAC, protobuf) and sync charts/swell
	$(GO) generate ./...
	bash hack/sync-chart.sh

.PHONY: chart-lint
chart-lint: ## helm lint and render checks of charts/swell (helm's Go module; no helm binary)
	$(GO) test -count=1 ./charts/swell/...

.PHONY: image
image: ## build the container image without Docker: dist/swell-$(VERSION).oci.tar (docs/install.md)
	$(GO) run ./hack/image --version $(VERSION) --out dist/swell-$(VERSION).oci.tar

.PHONY: clean
clean: ## remove build output (the test-binary cache stays)
	rm -rf bin dist .e2e.log

.PHONY: demo
demo: testbin-demo build-dev ## the main job on a local default: cluster, Redis, controller, a QWorker of real workers, load, live view
	bin/swell-dev

.PHONY: sim-report
sim-report: build ## simulate every examples/sim scenario into dist/sim-report.{csv,html}
	@mkdir -p dist
	bin/swell simulate --scenario examples/sim --csv dist/sim-report.csv --html dist/sim-report.html
