# tracesync: build, test, install, package.
#
#   make build                 ./tracesync
#   make test                  go test -race ./...
#   make install               binary, units, sysusers entry, example settings
#                              (PREFIX=/usr/local by default; DESTDIR for staging)
#   make deb                   dist/tracesync_VERSION_ARCH.deb, built with nfpm
#   make deb-test              build the .deb and check its contents (scripts/deb-test)
#   make fuzz                  run every fuzz target for FUZZTIME each (default 30s)
#   make image                 dist/tracesync_VERSION_linux_ARCH.oci.tar, an OCI image
#                              from scratch, built by tools/image (no daemon, no registry)
#   make k8s-test              the image and the Helm chart's checks (scripts/k8s-test)

PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
UNITDIR    ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
DOCDIR     ?= $(PREFIX)/share/doc/tracesync
SYSCONFDIR ?= /etc
DESTDIR    ?=

GO         ?= go
GOARCH     ?= $(shell $(GO) env GOARCH)
# Debian versions must start with a digit: v1.2.3 tags become 1.2.3.
VERSION    ?= $(patsubst v%,%,$(shell git describe --tags --match 'v[0-9]*' 2>/dev/null || echo 0.0.0~dev))
# nfpm comes from the Go module proxy at this pinned version, never from go.mod.
# (v2.46.0 and later need modules the proxy does not serve here.)
NFPM_VERSION ?= v2.45.0
NFPM       ?= $(GO) run github.com/goreleaser/nfpm/v2/cmd/nfpm@$(NFPM_VERSION)

BINARY     := tracesync
LDFLAGS    := -s -w -X main.version=$(VERSION)

.PHONY: all build test fuzz install uninstall deb deb-test image k8s-test clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BINARY) ./cmd/tracesync

test:
	$(GO) test -race ./...

# Each fuzz target runs alone for FUZZTIME (go test -fuzz takes one target
# at a time); CI runs only the seed corpora in */testdata/fuzz via go test.
FUZZTIME   ?= 30s
FUZZ_PKGS  ?= ./uploader ./internal/tracefile ./client ./client/stratixtest ./store ./watcher

fuzz:
	@set -e; for pkg in $(FUZZ_PKGS); do \
		for target in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
			echo "== $$pkg $$target ($(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

# The units name /usr/bin/tracesync and /usr/share/doc/tracesync; they are
# rewritten to BINDIR and DOCDIR as they are installed. The env file is
# installed only if there is none yet: it holds the operator's settings.
install: build
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(DOCDIR)
	install -d -m 0755 $(DESTDIR)$(SYSCONFDIR)/tracesync
	install -m 0755 $(BINARY) $(DESTDIR)$(BINDIR)/tracesync
	for u in tracesync.service tracesync@.service; do \
		sed -e 's|/usr/bin/tracesync|$(BINDIR)/tracesync|g' \
		    -e 's|/usr/share/doc/tracesync|$(DOCDIR)|g' systemd/$$u > $(DESTDIR)$(UNITDIR)/$$u.tmp && \
		chmod 0644 $(DESTDIR)$(UNITDIR)/$$u.tmp && \
		mv $(DESTDIR)$(UNITDIR)/$$u.tmp $(DESTDIR)$(UNITDIR)/$$u || exit 1; \
	done
	install -m 0644 packaging/tracesync.sysusers $(DESTDIR)$(SYSUSERSDIR)/tracesync.conf
	install -m 0644 systemd/tracesync.env.example $(DESTDIR)$(DOCDIR)/tracesync.env.example
	install -m 0644 docs/service.md $(DESTDIR)$(DOCDIR)/service.md
	install -m 0644 docs/state-file.md $(DESTDIR)$(DOCDIR)/state-file.md
	if [ ! -e $(DESTDIR)$(SYSCONFDIR)/tracesync/tracesync.env ]; then \
		install -m 0640 systemd/tracesync.env.example $(DESTDIR)$(SYSCONFDIR)/tracesync/tracesync.env; \
	fi
	@if [ -z "$(DESTDIR)" ]; then \
		echo "installed. Next: systemd-sysusers; systemctl daemon-reload; then see $(DOCDIR)/service.md"; \
	fi

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/tracesync \
	      $(DESTDIR)$(UNITDIR)/tracesync.service $(DESTDIR)$(UNITDIR)/tracesync@.service \
	      $(DESTDIR)$(SYSUSERSDIR)/tracesync.conf \
	      $(DESTDIR)$(DOCDIR)/tracesync.env.example $(DESTDIR)$(DOCDIR)/service.md \
	      $(DESTDIR)$(DOCDIR)/state-file.md
	-rmdir $(DESTDIR)$(DOCDIR)
	@echo "kept $(SYSCONFDIR)/tracesync (settings, key) and /var/lib/tracesync (state)"

deb: build
	mkdir -p dist
	VERSION='$(VERSION)' GOARCH='$(GOARCH)' \
		$(NFPM) package --config packaging/nfpm.yaml --packager deb --target dist/

deb-test:
	scripts/deb-test

# The image's binary: static, no build id, no VCS stamp, so the same tree
# and Go give the same bytes; tools/image fixes every timestamp. Image
# versions may not hold a '~' (OCI ref names): 0.0.0~dev becomes 0.0.0-dev.
IMAGE_VERSION := $(subst ~,-,$(VERSION))
IMAGE_BIN  := dist/image/tracesync-linux-$(GOARCH)
IMAGE      := dist/tracesync_$(IMAGE_VERSION)_linux_$(GOARCH).oci.tar

image:
	mkdir -p dist/image
	CGO_ENABLED=0 GOOS=linux GOARCH=$(GOARCH) $(GO) build -trimpath -buildvcs=false \
		-ldflags '-s -w -buildid= -X main.version=$(VERSION)' -o $(IMAGE_BIN) ./cmd/tracesync
	cd tools/image && $(GO) run . -binary ../../$(IMAGE_BIN) -arch $(GOARCH) \
		-version '$(IMAGE_VERSION)' -o ../../$(IMAGE)
	@echo "$(IMAGE)"

k8s-test:
	scripts/k8s-test

clean:
	rm -rf $(BINARY) dist
