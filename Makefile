# cbuild: a daemonless image builder.
#   make            build ./cbuild
#   make test       build, then run every suite (tests/run)
#   make asan       the same under AddressSanitizer and UBSan (build-asan/)
#   make fuzz       build and briefly run the parser's libFuzzer targets
#   make check      all three, counted together: what CI runs
#   make deps       install the Debian packages for building and testing
#   make install    PREFIX=/usr/local

PREFIX ?= /usr/local
VERSION := 0.1.0
PKGS := libarchive libcrypto libzstd libdeflate jansson libcurl libseccomp

CC ?= cc
B ?= build
ifeq ($(SANITIZE),1)
B := build-asan
SAN := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
endif

PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
# libcurl is not linked: oci/curl.c loads it when first used
PKG_LIBS := $(shell pkg-config --libs $(filter-out libcurl,$(PKGS)) 2>/dev/null)

CFLAGS ?= -O2 -g
WARN := -Wall -Wextra -Werror -Wformat=2 -Wmissing-prototypes -Wstrict-prototypes \
        -Wno-unused-parameter -Wvla
ALL_CFLAGS := -std=gnu11 -D_GNU_SOURCE -DCBUILD_VERSION='"$(VERSION)"' \
              $(WARN) $(CFLAGS) $(SAN) $(PKG_CFLAGS)
ALL_LDFLAGS := $(LDFLAGS) $(SAN)
LIBS := $(PKG_LIBS) -lpthread -ldl

MODULES := common parser oci cache runner builder
LIB_SRCS := $(filter-out builder/main.c runner/sandbox-main.c,$(foreach m,$(MODULES),$(wildcard $(m)/*.c)))
LIB_OBJS := $(LIB_SRCS:%.c=$(B)/%.o) $(B)/runner/sandbox-image.o
UNIT_SRCS := $(wildcard tests/unit/test-*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(B)/tests/%)
HEADERS := $(wildcard */*.h tests/unit/*.h)

ifeq ($(SANITIZE),1)
CBUILD_BIN := $(B)/cbuild
else
CBUILD_BIN := cbuild
endif

.PHONY: all test asan fuzz fuzz-build check deps install clean bench check-pkgs
all: check-pkgs $(CBUILD_BIN) $(UNIT_BINS)

check-pkgs:
	@pkg-config --exists $(PKGS) || { echo "cbuild: missing development packages; run 'make deps' (as root) first" >&2; exit 1; }

$(B)/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

# cbuild-sandbox: the sandbox's setup process (runner/runner-internal.h),
# static and libc-only, carried inside cbuild.  Under SANITIZE, UBSan traps
# (no runtime to link); AddressSanitizer cannot be linked statically.
SANDBOX_SRCS := runner/sandbox-main.c runner/sandbox.c runner/privileges.c runner/mounts.c \
                runner/overlay.c runner/user.c runner/wire.c common/common.c common/fs.c
SANDBOX_OBJS := $(SANDBOX_SRCS:%.c=$(B)/sandbox/%.o)
ifeq ($(SANITIZE),1)
SANDBOX_SAN := -fsanitize=undefined -fsanitize-undefined-trap-on-error
endif
$(B)/sandbox/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -D_GNU_SOURCE $(WARN) $(CFLAGS) $(SANDBOX_SAN) -c -o $@ $<
$(B)/cbuild-sandbox: $(SANDBOX_OBJS)
	$(CC) -static $(LDFLAGS) -o $@ $^
$(B)/runner/sandbox-image.o: runner/sandbox-image.S $(B)/cbuild-sandbox
	@mkdir -p $(dir $@)
	$(CC) -DSANDBOX_IMAGE='"$(B)/cbuild-sandbox"' -c -o $@ $<

$(B)/libcbuild.a: $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(CBUILD_BIN): $(B)/builder/main.o $(B)/libcbuild.a
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

$(B)/tests/%: $(B)/tests/unit/%.o $(B)/tests/unit/unit.o $(B)/libcbuild.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

test: all
	tests/run --build $(B)

asan:
	$(MAKE) SANITIZE=1 test

check: all fuzz-build
	$(MAKE) SANITIZE=1 all
	tests/run --build build --build build-asan --fuzz $(FUZZ_SECONDS)

# libFuzzer targets: clang only, built apart from everything else.
FUZZ_SECONDS ?= 60
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz-*.c)
FUZZ_BINS := $(FUZZ_SRCS:tests/fuzz/%.c=build-fuzz/%)
FUZZ_LIB_SRCS := common/common.c $(wildcard parser/*.c)
build-fuzz/%: tests/fuzz/%.c $(FUZZ_LIB_SRCS) $(HEADERS)
	@mkdir -p build-fuzz
	clang -std=gnu11 -D_GNU_SOURCE -g -O1 $(WARN) $(PKG_CFLAGS) -fsanitize=fuzzer,address,undefined \
	  -o $@ $< $(FUZZ_LIB_SRCS) -ljansson
fuzz-build: $(FUZZ_BINS)
fuzz: fuzz-build
	tests/run --fuzz $(FUZZ_SECONDS)

deps:
	./.ci/deps

bench: all
	bench/run

install: all
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 cbuild $(DESTDIR)$(PREFIX)/bin/cbuild

clean:
	rm -rf build build-asan build-fuzz cbuild
