# libcnode — see README.md. `make`, `make test`, `make demo`, `make bench`.
# Release objects go to build/, sanitizer objects (for every test) to build/asan/.

EI_DIR    ?= $(firstword $(wildcard /usr/lib/erlang/lib/erl_interface-*) /usr/local/lib/erlang/lib/erl_interface)
PREFIX    ?= /usr/local
VERSION   := 0.1.0
CC        ?= cc

WARN      := -Wall -Wextra -Werror -Wshadow -Wno-missing-field-initializers -Wno-format-truncation
CPPFLAGS  += -D_GNU_SOURCE -D_REENTRANT -DCNODE_VERSION='"$(VERSION)"' -Iinclude -I. -I$(EI_DIR)/include
CFLAGS    ?= -O2 -g
CFLAGS    += -std=c11 -fPIC -pthread $(WARN)
SANFLAGS  := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
LDLIBS    := -L$(EI_DIR)/lib -lei -lbsd -ldl -lpthread -lm

# For `cnode --version`: the OTP release and erl_interface this copy is built and tested with.
OTP_RELEASE := $(shell cat $(EI_DIR)/../../releases/*/OTP_VERSION 2>/dev/null | head -n 1)
EI_VERSION  := $(patsubst erl_interface-%,%,$(notdir $(EI_DIR)))
build/obj/cli/main.o build/asan/obj/cli/main.o build/tsan/obj/cli/main.o: \
  CPPFLAGS += -DCNODE_OTP_RELEASE='"$(OTP_RELEASE)"' -DCNODE_EI_VERSION='"$(EI_VERSION)"'

LIB_SRC   := $(sort $(wildcard ei_glue/*.c term/*.c cnode/*.c pg/*.c balancer/*.c))
CLI_SRC   := $(sort $(wildcard cli/*.c))
TEST_SRC  := $(sort $(wildcard tests/test_*.c))
PROG_SRC  := $(sort $(wildcard erlang_test_harness/c_src/*.c))
BENCH_SRC := $(sort $(wildcard bench/*.c))
EX_SRC    := $(sort $(wildcard examples/*.c))
HDRS      := $(wildcard include/*.h include/cnode/*.h ei_glue/*.h term/*.h cnode/*.h pg/*.h balancer/*.h cli/*.h tests/*.h)

TSANFLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=thread
LIB_OBJ   := $(LIB_SRC:%.c=build/obj/%.o)
TLIB_OBJ  := $(LIB_SRC:%.c=build/tsan/obj/%.o)
TTESTS    := $(TEST_SRC:tests/%.c=build/tsan/tests/%)
TPROGS    := $(PROG_SRC:erlang_test_harness/c_src/%.c=build/tsan/progs/%)
ALIB_OBJ  := $(LIB_SRC:%.c=build/asan/obj/%.o)
TESTS     := $(TEST_SRC:tests/%.c=build/asan/tests/%)
PROGS     := $(PROG_SRC:erlang_test_harness/c_src/%.c=build/asan/progs/%)
BENCHES   := $(BENCH_SRC:bench/%.c=build/bench/%)
EXAMPLES  := $(EX_SRC:examples/%.c=build/examples/%)

.PHONY: all deps pg-scale test test-build test-repeat unit ct demo bench bench-plot install clean format format-check tsan tsan-build
.PHONY: fuzz fuzz-build chaos partition soak
all: build/libcnode.a build/libcnode.so build/cnode $(EXAMPLES)

# Release objects: one section per function, for build/cnode's link order below.
build/obj/%.o: %.c $(HDRS)
	@mkdir -p $(dir $@)
	@echo "CC $<"
	@$(CC) $(CPPFLAGS) $(CFLAGS) -ffunction-sections -c $< -o $@
build/asan/obj/%.o: %.c $(HDRS)
	@mkdir -p $(dir $@)
	@echo "CC [asan] $<"
	@$(CC) $(CPPFLAGS) $(CFLAGS) $(SANFLAGS) -c $< -o $@

build/libcnode.a: $(LIB_OBJ)
	@mkdir -p build; rm -f $@; ar rcs $@ $^
# The shared library carries the whole of ei (ei ships only as a static library and users build
# terms with ei_x_*), and exports only the public API: libcnode.map keeps cnode_<letter>* (never
# cnode__*) and the ei_*/erl_* functions that ei.h declares; everything else is local.
SOVERSION := 0
EI_LIB    := $(EI_DIR)/lib/libei.a
build/libcnode.map: libcnode.map.in $(EI_DIR)/include/ei.h
	@mkdir -p build
	@{ sed '/@EI_API@/,$$d' libcnode.map.in; \
	   grep -ohE '\b(ei_[A-Za-z0-9_]+|erl_[A-Za-z0-9_]+|__erl_errno_place)\b' $(EI_DIR)/include/ei.h | sort -u \
	     | grep -Fxf - $$(nm -g --defined-only $(EI_LIB) | awk 'NF == 3 { print $$3 }' | sort -u >$@.ei; echo $@.ei) \
	     | sed 's/.*/    &;/'; \
	   sed '1,/@EI_API@/d' libcnode.map.in; } >$@.tmp && rm -f $@.ei && mv $@.tmp $@
build/libcnode.so: $(LIB_OBJ) build/libcnode.map
	$(CC) -shared -Wl,-soname,libcnode.so.$(SOVERSION) -Wl,--version-script=build/libcnode.map -pthread -o $@ \
	  $(LIB_OBJ) -Wl,--whole-archive $(EI_LIB) -Wl,--no-whole-archive $(filter-out -lei,$(LDLIBS))
# build/cnode: with ld.lld at hand, the functions an idle node runs (cli/hot.syms) are linked
# together at the end of .text, so a watching `cnode members` maps about 140 KB less of the
# binary (cli/README.md); without it, the plain link.
LLD       := $(shell command -v ld.lld 2>/dev/null)
LLD_ORDER := -fuse-ld=lld -Wl,--symbol-ordering-file=build/cnode.order -Wl,--no-warn-symbol-ordering
build/cnode: $(CLI_SRC:%.c=build/obj/%.o) build/libcnode.a cli/hot.syms cli/link-order.sh
	$(if $(LLD),sh cli/link-order.sh cli/hot.syms $(EI_LIB) $(filter %.o,$^) build/libcnode.a >build/cnode.order)
	$(CC) -pthread $(if $(LLD),$(LLD_ORDER)) -o $@ $(filter %.o,$^) build/libcnode.a $(LDLIBS)
build/examples/%: examples/%.c build/libcnode.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $< build/libcnode.a $(LDLIBS)

build/tsan/obj/%.o: %.c $(HDRS)
	@mkdir -p $(dir $@)
	@echo "CC [tsan] $<"
	@$(CC) $(CPPFLAGS) $(CFLAGS) $(TSANFLAGS) -c $< -o $@
build/tsan/libcnode.a: $(TLIB_OBJ)
	@mkdir -p build/tsan; rm -f $@; ar rcs $@ $^
build/tsan/cnode: $(CLI_SRC:%.c=build/tsan/obj/%.o) build/tsan/libcnode.a
	$(CC) $(TSANFLAGS) -pthread -o $@ $(filter %.o,$^) build/tsan/libcnode.a $(LDLIBS)
build/tsan/tests/%: tests/%.c tests/cunit_main.c build/tsan/libcnode.a $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(TSANFLAGS) -o $@ $< tests/cunit_main.c build/tsan/libcnode.a $(LDLIBS) -lcunit
build/tsan/progs/%: erlang_test_harness/c_src/%.c build/tsan/libcnode.a $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(TSANFLAGS) -o $@ $< build/tsan/libcnode.a $(LDLIBS)

build/asan/libcnode.a: $(ALIB_OBJ)
	@mkdir -p build/asan; rm -f $@; ar rcs $@ $^
build/asan/cnode: $(CLI_SRC:%.c=build/asan/obj/%.o) build/asan/libcnode.a
	$(CC) $(SANFLAGS) -pthread -o $@ $(filter %.o,$^) build/asan/libcnode.a $(LDLIBS)
build/asan/tests/%: tests/%.c tests/cunit_main.c build/asan/libcnode.a $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(SANFLAGS) -o $@ $< tests/cunit_main.c build/asan/libcnode.a $(LDLIBS) -lcunit
build/asan/progs/%: erlang_test_harness/c_src/%.c build/asan/libcnode.a $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(SANFLAGS) -o $@ $< build/asan/libcnode.a $(LDLIBS)
build/bench/%: bench/%.c build/libcnode.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $< build/libcnode.a $(LDLIBS)

deps:
	@sh tests/deps.sh

# pgscale_SUITE at full scale (20 BEAM nodes, 100,000 members, 1,000 groups); make test runs it reduced.
pg-scale: test-build
	CNODE_ROOT=$(CURDIR) CNODE_PG_SCALE=full rebar3 ct --dir erlang_test_harness/test --suite pgscale_SUITE

# libFuzzer targets (tests/fuzz/, README there): the library built again with clang and
# -fsanitize=fuzzer-no-link,address,undefined under build/fuzz/, one program per fuzz_*.c.
# `make fuzz` runs each for FUZZ_SECONDS (default 60), two at a time, on the kept corpus.
FUZZ_CC    ?= clang-14
FUZZ_SEC   := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_FLAGS := -std=c11 -pthread $(WARN) -Wno-unknown-warning-option $(FUZZ_SEC)
FUZZ_SRC   := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZERS    := $(FUZZ_SRC:tests/fuzz/%.c=build/fuzz/%)
FUZZ_OBJ   := $(LIB_SRC:%.c=build/fuzz/obj/%.o)
build/fuzz/obj/%.o: %.c $(HDRS)
	@mkdir -p $(dir $@)
	@echo "CC [fuzz] $<"
	@$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link -c $< -o $@
build/fuzz/libcnode.a: $(FUZZ_OBJ)
	@mkdir -p build/fuzz; rm -f $@; ar rcs $@ $^
build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/*.h build/fuzz/libcnode.a $(HDRS)
	@echo "LD [fuzz] $@"
	@$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_FLAGS) -fsanitize=fuzzer -o $@ $< build/fuzz/libcnode.a $(LDLIBS)
fuzz-build: $(FUZZERS)
FUZZ_SECONDS ?= 60
fuzz: fuzz-build
	@sh tests/fuzz/run.sh $(FUZZ_SECONDS) $(FUZZERS)

# Chaos, partition and soak (tests/README.md): one common_test suite each, alone, ending with its
# summary line. CHAOS_SECONDS (default 20), SOAK_SECONDS (default 600; make test runs 30).
CHAOS_SECONDS ?= 20
SOAK_SECONDS  ?= 600
chaos: deps build/asan/cnode $(PROGS)
	@CHAOS_SECONDS=$(CHAOS_SECONDS) sh tests/hard_suite.sh chaos
partition: deps build/asan/cnode $(PROGS)
	@sh tests/hard_suite.sh partition
soak: deps build/asan/cnode $(PROGS)
	@SOAK_SECONDS=$(SOAK_SECONDS) sh tests/hard_suite.sh soak

test-build: build/asan/cnode $(TESTS) $(PROGS) all

# The README's test command: deps, then CUnit and common_test under ASan/UBSan, one summary line
# ("N passed, N failed, N skipped"). The build keeps going past an error (-k), so that run-all.sh
# counts each program that did not build as a failure and still runs the rest.
test: deps
	@$(MAKE) --no-print-directory -k test-build || echo "make test-build failed: what did not build counts as failed"
	@$(MAKE) --no-print-directory -k fuzz-build || echo "make fuzz-build failed: the targets that did not build count as failed"
	@sh tests/run-all.sh $(TESTS)

# The common_test suites N times (default 10): per case, how often it failed; the last line is
# "repeat: N runs, N case failures".
N ?= 10
test-repeat: test-build
	@sh tests/repeat.sh $(N)

unit: test-build
	@sh tests/run-all.sh --unit-only $(TESTS)
ct: test-build
	@sh tests/run-all.sh --ct-only

# ThreadSanitizer: the CUnit programs, then the common_test suites with the
# C test nodes and `cnode` built with TSan (CNODE_SAN=tsan); any report fails.
tsan-build: build/tsan/cnode $(TTESTS) $(TPROGS)
tsan: deps
	@$(MAKE) --no-print-directory tsan-build
	@sh tests/run-tsan.sh $(TTESTS)

demo: deps
	@$(MAKE) --no-print-directory all
	@sh examples/demo.sh

bench: deps
	@$(MAKE) --no-print-directory all $(BENCHES)
	@sh bench/run.sh

# bench/report.png and the README's table from the bench/results.json in the tree (no run)
bench-plot:
	@sh bench/plot.sh

# cnode.pc is written here, so that its prefix is the PREFIX of this install (DESTDIR is only
# where the files go). Shared: `pkg-config --cflags --libs cnode`. Static: the same with --static,
# with the archive named (-l:libcnode.a), since -lcnode picks the shared library when both are there.
PC_LIBS_PRIVATE := $(filter-out -lei,$(LDLIBS)) -L$(EI_DIR)/lib -lei
install: all
	install -d $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/bin
	install -m 644 build/libcnode.a $(DESTDIR)$(PREFIX)/lib/
	install -m 755 build/libcnode.so $(DESTDIR)$(PREFIX)/lib/libcnode.so.$(VERSION)
	ln -sf libcnode.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libcnode.so.$(SOVERSION)
	ln -sf libcnode.so.$(SOVERSION) $(DESTDIR)$(PREFIX)/lib/libcnode.so
	install -m 644 include/*.h $(DESTDIR)$(PREFIX)/include/
	install -m 755 build/cnode $(DESTDIR)$(PREFIX)/bin/
	printf '%s\n' 'prefix=$(PREFIX)' 'libdir=$${prefix}/lib' 'includedir=$${prefix}/include' '' \
	  'Name: libcnode' 'Description: a C node for Erlang/Elixir clusters' 'Version: $(VERSION)' \
	  'Cflags: -I$${includedir} -I$(EI_DIR)/include -D_REENTRANT' 'Libs: -L$${libdir} -lcnode -pthread' \
	  'Libs.private: $(PC_LIBS_PRIVATE)' >$(DESTDIR)$(PREFIX)/lib/pkgconfig/cnode.pc
	chmod 644 $(DESTDIR)$(PREFIX)/lib/pkgconfig/cnode.pc

format:
	clang-format -i $(LIB_SRC) $(CLI_SRC) $(filter-out $(wildcard tests/*.h),$(HDRS))
format-check:
	clang-format --dry-run -Werror $(LIB_SRC) $(CLI_SRC)

clean:
	rm -rf build _build erlang_test_harness/_build
