# Serendip — the quick start is `make demo` and `make test`.
# On a fresh Debian machine, as root, missing packages are installed first; without root the
# exact command to run is printed instead.

SWIFT      ?= swift
BUILD      ?= .build
APT_PACKAGES = libmodbus-dev libserialport-dev libsqlite3-dev socat pkg-config python3-venv

.PHONY: demo test soak bench bench-peers bench-planner bench-planner-stuck peer-venv fuzz deps build clean

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

# Tests that time a real clock (a hold under a flood of requests, toy chemistry at 600x, the
# lost-instrument pauses, a virtual run that must take no wall time, a heartbeat beside an RTU bus blocked for 30 s) run after the rest, on their own: beside the whole suite on 2 cores their
# timings measure the machine's load rather than the code.
TIMED_TESTS = storesExactlyWhatTheSimulatedInstrumentsProduced|aBusBlockedForThirtySecondsDelaysNeitherAnotherBusNorAHeartbeat|aFloodOfRequestsDoesNotDelayAHold|aConstrainedBatchedOptimisationKeepsEveryRunInsideItsConstraint|LabFaultTests|theVirtualRunReproducesTheChemistryInNoWallTime

# The Bluesky export test validates with the event-model package, and the Modbus tests talk to pymodbus
# (an independent Modbus implementation), both from a virtualenv under the build folder.
TEST_VENV = $(BUILD)/test-venv
test-venv: deps
	[ -x $(TEST_VENV)/bin/python ] && $(TEST_VENV)/bin/python -c "import event_model, pymodbus, serial" 2>/dev/null \
	  || { python3 -m venv $(TEST_VENV) && $(TEST_VENV)/bin/pip install -q event-model 'pymodbus[serial]>=3.9,<4'; }

# Each phase has a deadline (about ten times what it takes here): a hung test fails the run with
# the stacks of every thread instead of running into CI's limit. Two tests at a time, one per core
# (Swift Testing's default is twice the cores): the devices, daemons and plugins the tests start
# need CPU too, and with four at once their replies missed half-second timeouts.
test: deps test-venv
	$(SWIFT) build --build-tests
	SWT_EXPERIMENTAL_MAXIMUM_PARALLELIZATION_WIDTH=2 scripts/with-deadline 900 $(SWIFT) test --skip-build --parallel --num-workers 2 --skip '$(TIMED_TESTS)'
	scripts/with-deadline 900 $(SWIFT) test --skip-build --filter '$(TIMED_TESTS)'

# The kill -9 test of the daemon (DaemonCrashTests) with 200 random kill points instead of 20.
# SERENDIP_KILL_SEED=N make soak draws the kill delays of the seed a failure printed again.
soak: deps
	$(SWIFT) build --build-tests
	SERENDIP_KILL_POINTS=200 $(SWIFT) test --skip-build --filter DaemonCrashTests
	SERENDIP_LOSS_CYCLES=1000 $(SWIFT) test --skip-build --filter 'theDaemonHoldsNoMoreDescriptors|OpenFileTests'
	SERENDIP_HIGH_DESCRIPTORS=1 $(SWIFT) test --skip-build --filter aConnectionOnADescriptorAbove1023IsServed
	SERENDIP_MODBUS_FAULT_READS=100000 $(SWIFT) test --skip-build --filter ModbusTCPFaultMixTests

bench: deps
	$(SWIFT) build -c release
	$(BUILD)/release/serendip bench

# The planner against BoTorch, Optuna, BayBE, scikit-optimize, HEBO and SMAC3 (issue 15), every
# method of a function in one run, SEEDS seeds. Long (hours on 2 cores: HEBO and BayBE take seconds
# per proposal); PLANNER_FUNCTIONS picks functions (NAME:BUDGET[:NOISE_SD]) to run one at a time.
# PEERS is the folder with bo_peers.py and setup.sh; the peers' virtualenv goes under the build folder.
PEERS      ?= ../shared/peers
SEEDS      ?= 20
PEER_PYTHON = $(BUILD)/peers-venv/bin/python
PLANNER_METHODS ?= "external:$(abspath $(BUILD))/release/serendip planner --stdio",optuna_gp,baybe,botorch_logei,skopt_gp,hebo,smac,random
PLANNER_FUNCTIONS ?= hartmann6:60 branin:30 rosenbrock@4:50 hartmann3:40 six_hump_camel:30 branin:30:1
peer-venv: deps
	[ -x $(PEER_PYTHON) ] && $(PEER_PYTHON) -c "import botorch, optuna, baybe, skopt, hebo, smac" 2>/dev/null \
	  || { PEERS_VENV=$(BUILD)/peers-venv bash $(PEERS)/setup.sh --bo && $(PEER_PYTHON) -m pip install -q hebo smac; }
bench-planner: peer-venv
	$(SWIFT) build -c release --product serendip
	scripts/bench_planner.sh $(PEER_PYTHON) $(PEERS) $(SEEDS) $(PLANNER_METHODS) $(BUILD) $(PLANNER_FUNCTIONS)

# How often each planner ends in Hartmann-6's second-best basin (regret >= 0.01) over 60 seeds.
bench-planner-stuck: peer-venv
	$(SWIFT) build -c release --product serendip
	$(PEER_PYTHON) scripts/bo_more_peers.py --peers $(PEERS) --function hartmann6 --budget 60 --n-init 5 --seeds 60 \
	  --methods $(PLANNER_METHODS) --json $(BUILD)/bench-planner-stuck.json
	python3 scripts/planner_targets.py --stuck $(BUILD)/bench-planner-stuck.json

# The daemon against Bluesky's RunEngine and bluesky-queueserver (issue 11), interleaved over ROUNDS
# rounds so that the ratios are taken side by side on this noisy machine (about 10 minutes on 2 cores with 11 rounds).
# setup.sh installs the peers' virtualenv under the build folder, and redis-server when run as root.
ROUNDS     ?= 11
bench-peers: deps
	$(SWIFT) build -c release --product serendip
	[ -x $(PEER_PYTHON) ] && $(PEER_PYTHON) -c "import bluesky, ophyd, bluesky_queueserver_api" 2>/dev/null \
	  && command -v redis-server >/dev/null || PEERS_VENV=$(BUILD)/peers-venv bash $(PEERS)/setup.sh
	python3 scripts/bench_peers.py --serendip $(BUILD)/release/serendip --python $(PEER_PYTHON) --peers $(PEERS) \
	  --rounds $(ROUNDS) --json $(BUILD)/bench-peers.json

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
