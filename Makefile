# fixsecure — `make demo` and `make test` are the two commands a fresh machine needs.
# Everything a test needs is installed from here: the venv, pip packages, Debian packages and the
# QuickFIX wheel (built once, cached outside the checkout because CI starts from a fresh clone).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
QUICKFIX_VERSION := 1.16.0
WHEELS ?= $(HOME)/.cache/fixsecure/wheels
PYTEST_ARGS ?=

.PHONY: help venv compiler lint typecheck check-static unit test test-fast test-reference test-uvloop sanitize fuzz demo bench quickfix sysdeps clean

help:
	@echo "make demo      encrypted session against the test counterparty, shows the wire"
	@echo "make test      ruff + mypy --strict + the whole pytest suite (interop and slow included),"
	@echo "               the core suites again on the Python hot path and the adapters on"
	@echo "               uvloop (make test-reference, make test-uvloop), and make sanitize"
	@echo "make test-fast the suite without tests marked slow"
	@echo "make sanitize  the C hot path under ASan + UBSan: differential, session and attack tests"
	@echo "make fuzz      longer fuzzing of the decoder and handshake (FUZZ_SECONDS=600)"
	@echo "make bench     fixsecure bench core and fixsecure bench proxy"

# setup.py builds the C hot path (fixsecure/_hotpath.c) into the checkout: edits to it reinstall.
# The compiler comes first: without one the optional extension would be skipped silently.
$(STAMP): pyproject.toml setup.py fixsecure/_hotpath.c | compiler
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

lint: venv
	$(BIN)/ruff check fixsecure tests examples $(wildcard benchmarks)

typecheck: venv
	$(BIN)/mypy --strict fixsecure

check-static: lint typecheck

# A C compiler for the hot path, with the sanitizer runtimes make sanitize preloads (Debian's gcc).
compiler:
	@command -v $(CC) >/dev/null 2>&1 && [ -e "$$($(CC) -print-file-name=libasan.so)" ] || { \
	  echo "installing Debian package gcc (the C hot path and its sanitizer build)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq gcc >/dev/null; }

# Debian packages the tests use (stunnel4 is the TLS baseline of the proxy benchmarks).
sysdeps:
	@command -v stunnel4 >/dev/null 2>&1 || { \
	  echo "installing Debian package stunnel4"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq stunnel4 >/dev/null; }

# QuickFIX C++ with its Python binding: no wheel on PyPI for this Python, so it is compiled once
# (~5 min, ~1.3 GB RAM) into $(WHEELS); later runs, fresh clones included, install from there.
quickfix: venv
	@$(BIN)/python -c 'import quickfix' 2>/dev/null || { \
	  mkdir -p $(WHEELS); \
	  ls $(WHEELS)/quickfix-$(QUICKFIX_VERSION)-*.whl >/dev/null 2>&1 || \
	    echo "building the quickfix $(QUICKFIX_VERSION) wheel once (about 5 minutes), cached in $(WHEELS)"; \
	  $(BIN)/python -m pip wheel -q --no-deps --find-links $(WHEELS) -w $(WHEELS) quickfix==$(QUICKFIX_VERSION) && \
	  $(BIN)/python -m pip install -q --no-index --find-links $(WHEELS) quickfix==$(QUICKFIX_VERSION); }

unit: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test: check-static sysdeps quickfix
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	$(MAKE) --no-print-directory test-reference test-uvloop sanitize

# The suites that pin the protocol down, again on the pure-Python reference of the hot path
# (specs/hot-path.md §4): both implementations must pass every attack.
CORE_TESTS := tests/test_session.py tests/test_attacks.py tests/test_connection_attacks.py \
	tests/test_transcript.py tests/test_router.py tests/test_proxy.py tests/test_hotpath.py
test-reference: venv
	FIXSECURE_HOTPATH=python $(BIN)/python -m pytest -q $(CORE_TESTS)

# The adapters' suites again on uvloop, the event loop the proxy and counterparty use by default.
test-uvloop: venv
	PYTHONPATH=tests $(BIN)/python -m pytest -p uvloop_policy -q tests/test_proxy.py \
	  tests/test_asyncio.py tests/counterparty/test_runner.py

# The C hot path rebuilt with AddressSanitizer and UndefinedBehaviorSanitizer, and the tests that
# feed it valid, cut, mutated and arbitrary bytes run on that build (PYTHONMALLOC=malloc so ASan
# sees every Python object; --capture=sys so its report reaches the terminal).
# The portable build (no SSE2 CheckSum) runs the differential tests too.
SANITIZED := build/sanitize/_hotpath.so
SANITIZED_PORTABLE := build/sanitize/portable/_hotpath.so
SANITIZE_CFLAGS = -shared -fPIC -std=c11 -O1 -g -fno-omit-frame-pointer \
	-fsanitize=address,undefined -fno-sanitize-recover=all \
	-I"$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
SANITIZE_RUN = PYTHONMALLOC=malloc ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
	LD_PRELOAD="$$($(CC) -print-file-name=libasan.so) $$($(CC) -print-file-name=libubsan.so)" \
	PYTHONPATH=tests $(BIN)/python -m pytest -p sanitized --capture=sys -q
sanitize: venv
	@mkdir -p $(dir $(SANITIZED_PORTABLE))
	$(CC) $(SANITIZE_CFLAGS) fixsecure/_hotpath.c -o $(SANITIZED)
	$(CC) $(SANITIZE_CFLAGS) -DFIXSECURE_NO_SIMD fixsecure/_hotpath.c -o $(SANITIZED_PORTABLE)
	FIXSECURE_SANITIZED=$(CURDIR)/$(SANITIZED) $(SANITIZE_RUN) \
	  tests/test_hotpath.py tests/test_session.py tests/test_attacks.py tests/test_connection_attacks.py
	FIXSECURE_SANITIZED=$(CURDIR)/$(SANITIZED_PORTABLE) $(SANITIZE_RUN) tests/test_hotpath.py

test-fast: check-static
	$(BIN)/python -m pytest -m 'not slow' $(PYTEST_ARGS)

FUZZ_SECONDS ?= 600
fuzz: venv
	FIXSECURE_FUZZ_SECONDS=$(FUZZ_SECONDS) $(BIN)/python -m pytest tests/test_fuzz.py -q

demo: venv
	$(BIN)/fixsecure demo

bench: venv sysdeps
	$(BIN)/fixsecure bench core
	$(BIN)/fixsecure bench proxy

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis *.egg-info build fixsecure/*.so
