# latchkey's build, test and release entry points. `make test` is what CI runs.

GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
BIN       := bin/latchkey
FUZZTIME  ?= 10s
PLATFORMS := linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64 windows/arm64
TOOLS     := $(GO) tool -modfile=hack/tools/go.mod
TIMED     := hack/timed

.PHONY: build test check unit mutate fuzz keyring stress e2e bench demo release cross clean

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/latchkey

# The one test command (README, .ci/run): every phase, each timed.
test:
	@$(TIMED) check  $(MAKE) --no-print-directory check cross
	@$(TIMED) unit   $(MAKE) --no-print-directory unit
	@$(TIMED) mutate $(MAKE) --no-print-directory mutate
	@$(TIMED) fuzz   $(MAKE) --no-print-directory fuzz
	@$(TIMED) keyring $(MAKE) --no-print-directory keyring
	@$(TIMED) stress $(MAKE) --no-print-directory stress
	@$(TIMED) e2e    $(MAKE) --no-print-directory e2e

# Formatting, vet, staticcheck, and vet of every release platform.
check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	cd hack/e2e && $(GO) vet ./...
	$(TOOLS) staticcheck ./...
	@for p in $(PLATFORMS); do \
		echo "vet $$p"; GOOS=$${p%/*} GOARCH=$${p#*/} CGO_ENABLED=0 $(GO) vet ./... || exit 1; \
	done

# Unit tests; as root also the ones that need an ordinary user, as nobody.
unit:
	$(GO) test -race -count=1 ./...
	GO=$(GO) hack/unprivileged-test.sh

# Each security or correctness check in hack/mutate/mutations.txt removed in
# turn, on a copy of the tracked files: the tests named for it must fail.
mutate:
	$(GO) run ./hack/mutate

# Each native fuzz target for FUZZTIME; the corpus lives in testdata/fuzz
# (hack/fuzz.sh: a failure that wrote no input is run once more).
fuzz:
	GO=$(GO) FUZZTIME=$(FUZZTIME) hack/fuzz.sh

# The keyring storage against a real Secret Service (gnome-keyring-daemon).
keyring:
	hack/keyring-test.sh

# Many real processes racing for real locks (see README "Reliability").
stress:
	LATCHKEY_STRESS=1 $(GO) test -count=1 -timeout=20m -run 'Stress' -v ./cmd/latchkey/

# The real-world suite: Dex, headless Chromium, kubectl, kube-apiserver.
e2e: build
	LATCHKEY_BIN=$(CURDIR)/$(BIN) hack/e2e/run.sh

bench:
	hack/bench/run.sh

demo:
	hack/demo.sh

cross:
	@for p in $(PLATFORMS); do \
		echo "build $$p"; GOOS=$${p%/*} GOARCH=$${p#*/} CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o /dev/null ./cmd/latchkey || exit 1; \
	done

release:
	VERSION=$(VERSION) hack/release.sh $(PLATFORMS)

clean:
	rm -rf bin dist
