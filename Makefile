# qvm — build, test, install. Every target that needs system packages first
# runs `deps`, which installs what a fresh Debian machine lacks (as root).

GO        ?= go
PREFIX    ?= /usr/local
DESTDIR   ?=
BINDIR    := $(DESTDIR)$(PREFIX)/bin
MANDIR    := $(DESTDIR)$(PREFIX)/share/man/man1
BASHDIR   := $(DESTDIR)$(PREFIX)/share/bash-completion/completions
ZSHDIR    := $(DESTDIR)$(PREFIX)/share/zsh/site-functions
FISHDIR   := $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d
UNITDIR   ?= $(DESTDIR)$(PREFIX)/lib/systemd/system
CONFDIR   ?= $(DESTDIR)/etc/qubes
TESTFLAGS ?=
GOTEST    := $(GO) test -count=1 $(TESTFLAGS)

.PHONY: all deps build docs test vet bench demo install clean stress fuzz test-kernel

all: build

# deps/*.deb list Debian packages, one per line; each component adds its own file.
deps:
	@./deps/install.sh deps/*.deb
	@./deps/start-user.sh

build: deps
	$(GO) build -o bin/qvm ./cmd/qvm
	$(GO) build -o bin/qvm-virt ./cmd/qvm-virt
	CGO_ENABLED=0 $(GO) build -o bin/qmemmand ./cmd/qmemmand
	$(GO) build -o bin/qmemmand-virt ./cmd/qmemmand-virt
	@$(MAKE) --no-print-directory docs

# Man pages and shell completions are generated from the command tree.
docs:
	./bin/qvm gen-docs --man man --completions completions

STATICCHECK := bin/tools/staticcheck

$(STATICCHECK):
	GOBIN=$(CURDIR)/bin/tools $(GO) install honnef.co/go/tools/cmd/staticcheck@v0.6.1

vet: $(STATICCHECK)
	$(GO) vet ./...
	$(GO) vet -tags failpoints ./...
	$(STATICCHECK) ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting"; exit 1; }

# The failpoint suite needs binaries built with the failpoints tag; the
# release build (build above) never has them.
test: build vet
	$(GOTEST) ./...
	$(GOTEST) -tags failpoints -run 'Failpoint' ./...

# Concurrency stress: many qvm processes changing one state dir at once
# (make test runs a 4 s form of the same test). The counts go to
# bin/stress.json; RELIABILITY.md quotes the last run.
STRESSTIME    ?= 60s
STRESSWORKERS ?= 16
stress: build
	mkdir -p bin
	QVM_STRESS_TIME=$(STRESSTIME) QVM_STRESS_WORKERS=$(STRESSWORKERS) QVM_STRESS_REPORT=$(CURDIR)/bin/stress.json \
		$(GOTEST) -timeout 30m -v -run '^TestStress$$' ./commands/
	@cat bin/stress.json

# Fuzzing: each Go fuzz target for FUZZTIME (scripts/fuzz.sh lists them);
# make test runs their seed corpora (testdata/fuzz) as plain tests.
FUZZTIME ?= 30s
fuzz:
	FUZZTIME=$(FUZZTIME) GO=$(GO) ./scripts/fuzz.sh

bench: build
	$(GO) run ./internal/benchrun -out BENCHMARKS.md
	$(GO) test -run '^$$' -bench . -benchmem ./internal/stategen/

# A small real Linux guest (Debian cloud kernel + busybox initramfs) in the
# linux-kernel pool layout: KERNEL_DIR/VERSION/{vmlinuz,initramfs}.
test-kernel: deps
	@test -n "$(KERNEL_DIR)" || { echo "usage: make test-kernel KERNEL_DIR=DIR" >&2; exit 2; }
	@./scripts/test-kernel.sh "$(KERNEL_DIR)"

demo: build
	./scripts/demo.sh

install: build
	install -d $(BINDIR) $(MANDIR) $(BASHDIR) $(ZSHDIR) $(FISHDIR)
	install -m 0755 bin/qvm bin/qvm-virt bin/qmemmand bin/qmemmand-virt $(BINDIR)/
	for a in $$(./bin/qvm gen-docs --list-aliases); do ln -sf qvm $(BINDIR)/$$a; done
	install -m 0644 man/*.1 $(MANDIR)/
	install -m 0644 completions/qvm.bash $(BASHDIR)/qvm
	for a in $$(./bin/qvm gen-docs --list-aliases); do ln -sf qvm $(BASHDIR)/$$a; done
	install -m 0644 completions/_qvm $(ZSHDIR)/_qvm
	install -m 0644 completions/qvm.fish $(FISHDIR)/qvm.fish
	install -d $(UNITDIR) $(CONFDIR)
	sed 's|@BINDIR@|$(PREFIX)/bin|' memd/dist/qubes-qmemman.service.in > $(UNITDIR)/qubes-qmemman.service
	chmod 0644 $(UNITDIR)/qubes-qmemman.service
	test -e $(CONFDIR)/qmemman.conf || install -m 0644 memd/dist/qmemman.conf $(CONFDIR)/qmemman.conf

clean:
	rm -rf bin man/*.1 completions/qvm.bash completions/_qvm completions/qvm.fish
