# lua-smtpd. `make run` and `make test` are all a newcomer needs: both
# install the Debian packages they miss (as root) or print the command.

LUA      ?= lua5.4
PKGS      = lua5.4 liblua5.4-dev libuv1-dev lua-busted pkg-config gcc make
CC       ?= cc
CFLAGS   ?= -O2 -g
WARN      = -std=c99 -D_GNU_SOURCE -Wall -Wextra -Wshadow \
            -Wmissing-prototypes -Wstrict-prototypes
PKG_CFLAGS = $(shell pkg-config --cflags lua5.4 libuv 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs libuv 2>/dev/null)
SRC       = $(wildcard csrc/*.c)
HDR       = $(wildcard csrc/*.h)
BUILD    ?= build
SO        = $(BUILD)/smtpd/core.so
luaenv    = LUA_PATH="$(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;$(CURDIR)/spec/?.lua;;" \
            LUA_CPATH="$(CURDIR)/$(1)/?.so;;"
LUAENV    = $(call luaenv,$(BUILD))
ASAN_CFLAGS = -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer \
              -fno-sanitize-recover=undefined
# A hung spec must fail the run, not hold CI: the suite takes ~30 s.
WATCHDOG ?= timeout -k 10 900

.PHONY: all deps run test asan valgrind fuzz fuzz-deps fuzz-short soak bench clean

all: deps $(SO)

# Installs what is missing (root) or says exactly what to run.
deps:
	@missing=""; for p in $(PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" \
	    || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq $$missing) >/dev/null || exit 1; \
	  else \
	    echo "missing packages; run:"; \
	    echo "  sudo apt-get install -y$$missing"; exit 1; \
	  fi; \
	fi

$(SO): $(SRC) $(HDR)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(WARN) -fPIC -shared -fvisibility=hidden $(PKG_CFLAGS) \
	  -o $@ $(SRC) $(PKG_LIBS)

# make run PORT=2525, or SMTPD_ADDR=0.0.0.0:2525 (host:port).
PORT       ?= 8025
SMTPD_ADDR ?= localhost:$(PORT)
run: all
	$(LUAENV) $(LUA) bin/lua-smtpd -n -c DebuggingServer $(SMTPD_ADDR)

test: all
	$(LUAENV) $(WATCHDOG) $(LUA) spec/run.lua $(SPEC)

# The whole suite under AddressSanitizer + UBSan.
asan: deps
	$(MAKE) BUILD=build-asan CFLAGS="$(ASAN_CFLAGS)" build-asan/smtpd/core.so
	$(call luaenv,build-asan) \
	  LD_PRELOAD="$$($(CC) -print-file-name=libasan.so) $$($(CC) -print-file-name=libubsan.so)" \
	  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  $(WATCHDOG) $(LUA) spec/run.lua $(SPEC)

valgrind: all
	$(LUAENV) $(WATCHDOG) valgrind --leak-check=full --error-exitcode=3 --errors-for-leak-kinds=definite \
	  $(LUA) spec/run.lua $(SPEC)

# libFuzzer targets over the engine (parser + session), ASan + UBSan.
FUZZ_TARGETS = session_fuzz split_fuzz
FUZZ_SRC     = csrc/buffer.c csrc/parser.c csrc/text.c csrc/addr.c \
               csrc/session.c
FUZZ_SECONDS ?= 600
fuzz/build/%: fuzz/%.c $(FUZZ_SRC) csrc/proto.h
	@mkdir -p fuzz/build
	clang -g -O1 -std=c99 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined \
	  -fno-sanitize-recover=undefined -o $@ $< $(FUZZ_SRC)

fuzz-deps:
	@command -v clang >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing: clang"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq clang) >/dev/null || exit 1; \
	  else \
	    echo "missing clang; run:"; echo "  sudo apt-get install -y clang"; \
	    exit 1; \
	  fi; }

fuzz: fuzz-deps $(addprefix fuzz/build/,$(FUZZ_TARGETS))
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p fuzz/build/corpus-$$t; \
	  echo "fuzzing $$t for $(FUZZ_SECONDS) s"; \
	  fuzz/build/$$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	    -artifact_prefix=fuzz/build/$$t- fuzz/build/corpus-$$t \
	    fuzz/corpus/$${t%_fuzz} || exit 1; \
	done

# Not a test: 1000 idle connections beside 50 x 100 messages (bench/soak).
soak: all
	bench/soak

# Not a test: lua-smtpd against smtp-sink, smtp-server, CPython smtpd and
# aiosmtpd under smtp-source, then 10,000 idle connections (bench/README.md).
bench: all
	$(WATCHDOG) bench/run

fuzz-short:
	$(MAKE) fuzz FUZZ_SECONDS=30

clean:
	rm -rf build build-asan fuzz/build bench/.work
