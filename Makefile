# Serendip — the quick start is `make demo` and `make test`.
# On a fresh Debian machine, as root, missing packages are installed first; without root the
# exact command to run is printed instead.

SWIFT      ?= swift
BUILD      ?= .build
APT_PACKAGES = libmodbus-dev libserialport-dev libsqlite3-dev socat pkg-config

.PHONY: demo test bench fuzz deps build clean

deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "missing packages; run: sudo apt-get install -y$$missing"; exit 1; \
	  fi; \
	fi

build: deps
	$(SWIFT) build

demo: build
	$(BUILD)/debug/serendip demo

test: deps
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build --parallel --num-workers 2

bench: deps
	$(SWIFT) build -c release
	$(BUILD)/release/serendip bench

clean:
	rm -rf $(BUILD)

# Fuzz the protocol parser and validator with libFuzzer for FUZZ_SECONDS (default 300).
# Seeds: the golden corpus and the example protocols. Inputs that crash land in Fuzz/findings/;
# copy each into Tests/LabSpecTests/FuzzRegressions/ so the test suite keeps it.
FUZZ_SECONDS ?= 300
fuzz: deps
	cd Fuzz && $(SWIFT) build -c release -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library
	mkdir -p Fuzz/findings $(BUILD)/fuzz-corpus
	SWIFT_BACKTRACE=enable=no Fuzz/.build/release/ProtocolFuzzer -max_total_time=$(FUZZ_SECONDS) -max_len=65536 \
	  -timeout=10 -rss_limit_mb=4096 -artifact_prefix=Fuzz/findings/ \
	  $(BUILD)/fuzz-corpus Tests/LabSpecTests/Corpus protocols
