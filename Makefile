# Thin wrapper over Meson/Ninja. `make demo` and `make test` work on a fresh
# Debian 12 machine as root: they install what is missing first.
BUILD ?= build
PYTHON ?= /usr/bin/python3
COCOON = $(abspath $(BUILD))/src/cocoon
MESON_OPTS ?=

.PHONY: all deps build demo test test-unit test-integration test-fuzz asan bench fuzz clean kernel kernel-config

all: build

deps:
	@scripts/install-deps.sh all

$(BUILD)/build.ninja:
	meson setup $(BUILD) $(MESON_OPTS)

build: $(BUILD)/build.ninja
	ninja -C $(BUILD)

demo: deps build
	@examples/demo.sh $(COCOON)

test: deps build kernel
	meson test -C $(BUILD) --print-errorlogs
	COCOON=$(COCOON) $(PYTHON) -m pytest -q tests/integration tests/guest tests/kernel
	$(MAKE) test-fuzz

test-unit: build
	meson test -C $(BUILD) --print-errorlogs

test-integration: build
	COCOON=$(COCOON) $(PYTHON) -m pytest -q tests/integration tests/guest tests/kernel

# Short libFuzzer runs of every harness (longer: FUZZ_SECONDS=600 make test-fuzz).
FUZZ_SECONDS ?= 20
test-fuzz:
	@CC=clang meson setup build-fuzz -Dfuzz=true -Dstatic=false -Db_sanitize=address,undefined -Db_lundef=false >/dev/null 2>&1 || true
	ninja -C build-fuzz
	@mkdir -p tests/fuzz/crashes
	@for f in build-fuzz/tests/fuzz/fuzz_*; do \
	  [ -f "$$f" ] && [ -x "$$f" ] || continue; \
	  name=$$(basename $$f); seeds=tests/fuzz/corpus/$${name#fuzz_}; \
	  work=build-fuzz/corpus-$${name#fuzz_}; mkdir -p $$work; \
	  echo "+ $$name for $(FUZZ_SECONDS)s"; \
	  $$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=0 -artifact_prefix=tests/fuzz/crashes/ \
	    $$work $$seeds >/dev/null 2>build-fuzz/$$name.log \
	    || { tail -40 build-fuzz/$$name.log; exit 1; }; \
	done

# The same tests against an AddressSanitizer + UBSan build.
asan:
	meson setup build-asan -Db_sanitize=address,undefined -Db_lundef=false -Dstatic=false >/dev/null 2>&1 || true
	ninja -C build-asan
	meson test -C build-asan --print-errorlogs
	COCOON=$(abspath build-asan)/src/cocoon $(PYTHON) -m pytest -q tests/integration tests/guest tests/kernel

bench: deps build
	$(PYTHON) bench/run.py --cocoon $(COCOON)
	$(PYTHON) bench/vm.py --cocoon $(COCOON)
	$(PYTHON) bench/virtio.py --cocoon $(COCOON)
	$(PYTHON) bench/attach.py --cocoon $(COCOON)
	$(PYTHON) bench/fs.py --cocoon $(COCOON)
	$(PYTHON) bench/kernel.py

# The guest kernel (docs/kernel.md): cached per machine, so usually instant.
kernel:
	@scripts/build-kernel.sh

kernel-config:
	@scripts/build-kernel.sh --print-config

clean:
	rm -rf $(BUILD) build-asan build-fuzz
