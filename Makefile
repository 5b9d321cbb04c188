# The test command of README.md; .ci/run calls `make ci`.
GO ?= go
STATICCHECK_VERSION ?= v0.8.2

.PHONY: test ci lint fmt-check build fuzz fuzz-brief bench run ha

## test: the whole suite against the local PostgreSQL, with the race detector
test:
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 15m ./...
	# The webhook soak at its full 10,000 events (too slow under -race).
	$(GO) test -count=1 -timeout 10m -run 'TestSoak$$' ./webhooks/

## ci: formatting, vet, staticcheck, the whole suite, then every fuzz target briefly
ci: fmt-check lint test fuzz-brief

## fuzz-brief: each fuzz target for a few seconds beyond its seed corpus (CI)
fuzz-brief:
	$(MAKE) fuzz FUZZTIME=3s

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

lint:
	@command -v staticcheck >/dev/null 2>&1 || $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	PATH="$$PATH:$$($(GO) env GOPATH)/bin" staticcheck ./...

build:
	$(GO) build -o bin/vigil ./cmd/vigil

## fuzz: run each fuzz target for a while (FUZZTIME=30s)
FUZZTIME ?= 30s
fuzz:
	GO=$(GO) FUZZTIME=$(FUZZTIME) bash .ci/fuzz

## bench: the benchmarks of docs/performance.md
bench:
	$(GO) run ./bench/ledgerbench
	bash bench/http.sh
	$(GO) run ./bench/projbench

## run: vigil serve against the local PostgreSQL
run:
	$(GO) run ./cmd/vigil serve

## ha: the failover and backup tests on a real Patroni cluster (issue 16;
## scripts/ha-cluster; needs patroni, etcd-server, haproxy, pgbackrest)
ha:
	$(GO) test -tags ha -count=1 -timeout 20m -v -run '^(TestFailover|TestBackupRestore)$$' ./cmd/vigil/
