# gpt2c: GPT-2, whole, in C.
#
#   make              build/libgpt2.a, build/libgpt2.so, build/gpt2
#   make test         install test dependencies, then every test (also under
#                     ASan and UBSan); ends with "N passed, N failed"
#   make check        the tests only, without installing anything
#   make asan/ubsan   the unit tests under a sanitizer
#   make bench        the benchmark table (docs/benchmarks.md)
#   make bench-compare  the same work timed in PyTorch, and the ratios
#   make default-model  train models/kjv from scratch (about an hour)
#   make install PREFIX=/usr/local
#   make clean
#
# Overridable: CC, CFLAGS, OPENMP=0, GEMM=dnnl|none, BUILD=dir.

CC      ?= cc
BUILD   ?= build
PREFIX  ?= /usr/local
OPENMP  ?= 1
# The GEMM library for batched matmuls (prefill, training): oneDNN when its
# header is installed, else gpt2c's own portable kernel.
GEMM    ?= $(if $(wildcard /usr/include/dnnl.h),dnnl,none)

OPT      ?= -O2
CFLAGS   ?= $(OPT) -g
WARN      = -Wall -Wextra -Wno-unused-parameter
CPPFLAGS += -Iinclude -D_GNU_SOURCE -DGPT2_DATADIR='"$(PREFIX)/share/gpt2c"'
ALLCFLAGS = -std=c11 $(WARN) $(CFLAGS) -fPIC $(shell pkg-config --cflags libpcre2-8 2>/dev/null)
LDLIBS    = -lpcre2-8 -lcjson -lz -lm -lpthread

# GCC 12 at -O2 vectorises only loops that need no run-time checks (the
# "very cheap" cost model): GELU, softmax and the kernels' loops stayed
# scalar and took a fifth of prefill. Clang vectorises them at -O2.
IS_CLANG := $(shell $(CC) -dM -E - < /dev/null 2>/dev/null | grep -c __clang__)
ifeq ($(IS_CLANG),0)
  ALLCFLAGS += -fvect-cost-model=dynamic
endif
# sqrtf and friends may then vectorise (nothing here reads errno)
ALLCFLAGS += -fno-math-errno

ifeq ($(OPENMP),1)
  ALLCFLAGS += -fopenmp
  LDLIBS    += -fopenmp
endif
ifeq ($(GEMM),dnnl)
  CPPFLAGS += -DGPT2_USE_DNNL
  LDLIBS   += -ldnnl
endif

LIB_SRC  = $(sort $(wildcard src/*.c))
LIB_OBJ  = $(LIB_SRC:src/%.c=$(BUILD)/obj/%.o)
TOOL_SRC = $(sort $(wildcard tools/*.c))
TOOL_OBJ = $(TOOL_SRC:tools/%.c=$(BUILD)/obj/tools/%.o)
TEST_SRC = $(sort $(wildcard tests/test_*.c))
TEST_BIN = $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
TESTTOOL_SRC = $(sort $(wildcard tests/tools/*.c))
TESTTOOL_BIN = $(TESTTOOL_SRC:tests/tools/%.c=$(BUILD)/tests/tools/%)
EXAMPLE_SRC = $(sort $(wildcard examples/*.c))
EXAMPLE_BIN = $(EXAMPLE_SRC:examples/%.c=$(BUILD)/examples/%)
HDRS     = include/gpt2.h src/internal.h $(wildcard src/*.h tests/*.h tools/*.h)

.PHONY: all lib tools tests examples test check asan ubsan bench bench-compare \
        default-model finetune-demo \
        install uninstall clean debug fuzz deps deps-test

all: lib tools

lib: $(BUILD)/libgpt2.a $(BUILD)/libgpt2.so
tools: $(BUILD)/gpt2
tests: $(TEST_BIN) $(TESTTOOL_BIN)
examples: $(EXAMPLE_BIN)

$(BUILD)/obj/%.o: src/%.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ALLCFLAGS) -Isrc -c $< -o $@

# The attention page (web/attention.html), compiled into the library as a
# byte array that src/attention_html.c includes.
$(BUILD)/gen/attention_html.h: web/attention.html
	@mkdir -p $(dir $@)
	{ echo 'static const unsigned char attention_html[] = {'; \
	  od -An -v -tx1 $< | sed 's/\([0-9a-f][0-9a-f]\)/0x\1,/g'; \
	  echo '};'; } > $@.tmp && mv $@.tmp $@
$(BUILD)/obj/attention_html.o: $(BUILD)/gen/attention_html.h
$(BUILD)/obj/attention_html.o: CPPFLAGS += -I$(BUILD)/gen

$(BUILD)/obj/tools/%.o: tools/%.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ALLCFLAGS) -Isrc -c $< -o $@

$(BUILD)/libgpt2.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/libgpt2.so: $(LIB_OBJ)
	$(CC) $(ALLCFLAGS) -shared -Wl,-soname,libgpt2.so.0 -o $@ $^ $(LDLIBS)

$(BUILD)/gpt2: $(TOOL_OBJ) $(BUILD)/libgpt2.a
	$(CC) $(ALLCFLAGS) -o $@ $(TOOL_OBJ) $(BUILD)/libgpt2.a $(LDLIBS)

$(BUILD)/tests/%: tests/%.c $(BUILD)/libgpt2.a $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ALLCFLAGS) -Isrc -Itests -o $@ $< $(BUILD)/libgpt2.a $(LDLIBS)

$(BUILD)/tests/tools/%: tests/tools/%.c $(BUILD)/libgpt2.a $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ALLCFLAGS) -Isrc -Itests -o $@ $< $(BUILD)/libgpt2.a $(LDLIBS)

$(BUILD)/examples/%: examples/%.c $(BUILD)/libgpt2.a include/gpt2.h
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ALLCFLAGS) -o $@ $< $(BUILD)/libgpt2.a $(LDLIBS)

# ------------------------------------------------------------------ tests
# make test: installs what the tests need, then runs them all.
test: deps-test
	@$(MAKE) --no-print-directory check

check: all tests examples
	@bash tests/run_all.sh

asan:
	@$(MAKE) --no-print-directory BUILD=build-asan OPT=-O1 \
	  CFLAGS="-O1 -g -fsanitize=address -fno-omit-frame-pointer" all tests
	@bash tests/run_unit.sh build-asan

ubsan:
	@$(MAKE) --no-print-directory BUILD=build-ubsan OPT=-O1 \
	  CFLAGS="-O1 -g -fsanitize=undefined -fno-sanitize-recover=undefined" \
	  all tests
	@bash tests/run_unit.sh build-ubsan

debug:
	@$(MAKE) --no-print-directory BUILD=build-debug CFLAGS="-O0 -g" all tests

fuzz:
	@bash tests/fuzz/run.sh 30

deps:
	@bash scripts/install-deps.sh

deps-test:
	@bash scripts/install-deps.sh --test

bench: all
	@bash bench/run.sh

# gpt2c against PyTorch (Debian's python3-torch) on the same model and work,
# in one run; the ratios go into docs/benchmarks.md.
bench-compare: all
	@bash bench/compare.sh

# The default model, trained from scratch on the King James Bible by
# gpt2c itself (about an hour on 2 cores); scripts/default-model.sh is the
# recipe.
default-model: all
	bash scripts/default-model.sh

# Transfer learning, shown: the default model fine-tuned on the Brown
# corpus, validation loss before and after (about ten minutes).
finetune-demo: all
	bash scripts/finetune-demo.sh

# ---------------------------------------------------------------- install
install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib \
	  $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig \
	  $(DESTDIR)$(PREFIX)/share/gpt2c/tokenizer
	install -m 755 $(BUILD)/gpt2 $(DESTDIR)$(PREFIX)/bin/gpt2
	install -m 644 $(BUILD)/libgpt2.a $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(BUILD)/libgpt2.so $(DESTDIR)$(PREFIX)/lib/libgpt2.so.0
	ln -sf libgpt2.so.0 $(DESTDIR)$(PREFIX)/lib/libgpt2.so
	install -m 644 include/gpt2.h $(DESTDIR)$(PREFIX)/include/
	install -m 644 assets/tokenizer/vocab.json assets/tokenizer/merges.txt \
	  $(DESTDIR)$(PREFIX)/share/gpt2c/tokenizer/
	if [ -d models ]; then cp -r models $(DESTDIR)$(PREFIX)/share/gpt2c/; fi
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|0.1.0|g' \
	  -e 's|@LIBS@|$(filter-out -fopenmp,$(LDLIBS))$(if $(filter 1,$(OPENMP)), -lgomp)|g' \
	  scripts/gpt2c.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/gpt2c.pc

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/gpt2 $(DESTDIR)$(PREFIX)/lib/libgpt2.* \
	  $(DESTDIR)$(PREFIX)/include/gpt2.h \
	  $(DESTDIR)$(PREFIX)/lib/pkgconfig/gpt2c.pc
	rm -rf $(DESTDIR)$(PREFIX)/share/gpt2c

clean:
	rm -rf build build-asan build-ubsan build-debug build-fuzz build-portable
