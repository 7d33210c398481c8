# helexa-go: build, test, lint, benchmark and fuzz targets.
# `make test` is the command the README names and .ci/run calls.

GO              ?= go
STATICCHECK_VER ?= v0.8.2
FUZZTIME        ?= 10s
BENCHTIME       ?= 1s
export CGO_CFLAGS ?= -Wno-deprecated-declarations

.PHONY: all build test lint staticcheck bench fuzz

all: lint test

build:
	$(GO) build ./...

test:
	$(GO) test -race -count=1 ./...

lint: staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$$($(GO) env GOPATH)/bin/staticcheck ./...

staticcheck:
	@v=$$($$($(GO) env GOPATH)/bin/staticcheck -version 2>/dev/null | awk '{print $$NF}'); \
	case "$$v" in *$(STATICCHECK_VER:v%=%)*) ;; *) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VER) ;; esac

# Go benchmarks with allocation counts, then the bench/ harness and the
# fleet benchmark (bench/fleet: routing policies over a simulated fleet)
# when present.
# The Redis ledger's throughput is measured a second time with the client
# held to one core (-cpu 1), as when Redis has a core of its own: on a
# two-core machine the client's scheduler otherwise competes with
# redis-server for both.
bench:
	$(GO) test -run='^$$' -bench=. -benchmem -benchtime=$(BENCHTIME) ./...
	$(GO) test -run='^$$' -bench=ReserveSettleParallel16 -cpu=1 -benchmem -benchtime=$(BENCHTIME) ./entitlements/redisledger/
	@if [ -d bench ]; then $(GO) run ./bench; fi
	@if [ -d bench/fleet ]; then $(GO) run ./bench/fleet; fi

# Every Fuzz target in the module, each for FUZZTIME. A failed target is
# run once more: a real finding was written to testdata/fuzz and fails the
# rerun at once, while a clean run that Go's fuzz coordinator failed at the
# deadline ("context deadline exceeded", go.dev/issue/75804, fixed in Go
# 1.27) passes it.
FUZZ = $(GO) test -run='^$$' -fuzz="^$$f$$" -fuzztime=$(FUZZTIME) -fuzzminimizetime=200ms $$pkg
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list='^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$f"; \
	    $(FUZZ) || { echo "== $$pkg $$f: once more"; $(FUZZ); }; \
	  done; \
	done
