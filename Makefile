# Thin wrapper over CMake.  `make demo` and `make test` work on a fresh
# Debian 12 machine: they install what is missing first (scripts/deps.sh).
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
ifdef CI
CMAKE_FLAGS += -DMYC_WERROR=ON
endif

.PHONY: all deps build test demo demo-build bench clean

all: build

deps:
	@scripts/deps.sh

build: deps
	@cmake -S . -B $(BUILD) $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# Bandit end to end on the bundled Polygon sample (examples/bandit/),
# served by the replay server at 200 messages a second (a busy node's pace
# for the pools it tracks), so the latencies printed are per message, not
# those of a 60-line burst into cold code.
# Only what the demo runs, without Node.js (the npm peers are for the
# tests), and quietly: the build's output is shown only when it fails.
# METRICS=127.0.0.1:9464 also serves the engine's metrics there; TRACE=1
# exports every message's span and prints the longest trace at the end.
demo: demo-build
	@examples/bandit/run --rate 200 $(if $(METRICS),--metrics $(METRICS)) \
	  $(if $(TRACE),--trace)

demo-build:
	@scripts/deps.sh --no-node
	@scripts/quiet.sh "configuring $(BUILD)/" cmake -S . -B $(BUILD) $(CMAKE_FLAGS)
	@scripts/quiet.sh "building mycelium and myc-replay" \
	  cmake --build $(BUILD) -j $(JOBS) --target mycelium myc-replay

# Every scenario, then the cost of the metrics: the emit scenario of a
# -DMYC_METRICS=OFF build against this one, alternated over 5 rounds.
bench: build
	$(BUILD)/bench/myc-bench
	@scripts/quiet.sh "building $(BUILD)-nometrics/ (-DMYC_METRICS=OFF)" sh -c \
	  'cmake -S . -B $(BUILD)-nometrics $(CMAKE_FLAGS) -DMYC_METRICS=OFF && \
	   cmake --build $(BUILD)-nometrics -j $(JOBS) --target myc-bench'
	@echo "metrics cost: old = -DMYC_METRICS=OFF, new = this build"
	bench/compare.sh $(BUILD)-nometrics/bench/myc-bench $(BUILD)/bench/myc-bench 5 emit

clean:
	rm -rf $(BUILD)
