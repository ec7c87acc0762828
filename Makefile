# lua-smtpd. `make run` and `make test` are all a newcomer needs: both
# install the Debian packages they miss (make deps: as root, or it prints
# the command). Plain `make` only builds.

LUA      ?= lua5.4
PKGS      = lua5.4 liblua5.4-dev libuv1-dev libssl-dev lua-busted pkg-config gcc make \
            libc-ares-dev libcurl4-openssl-dev libpsl-dev publicsuffix lua-cjson
CC       ?= cc
CFLAGS   ?= -O2 -g
WARN      = -std=c99 -D_GNU_SOURCE -Icsrc -Wall -Wextra -Wshadow \
            -Wmissing-prototypes -Wstrict-prototypes
# luarocks (build type "make") passes LUA_INCDIR and LIBUV_*DIR; a checkout
# asks pkg-config.
ifdef LUA_INCDIR
PKG_CFLAGS = -I$(LUA_INCDIR) -I$(LIBUV_INCDIR) -I$(OPENSSL_INCDIR) -I$(CARES_INCDIR) \
             -I$(CURL_INCDIR) -I$(PSL_INCDIR)
PKG_LIBS   = -L$(LIBUV_LIBDIR) -luv -L$(OPENSSL_LIBDIR) -lssl -lcrypto \
             -L$(CARES_LIBDIR) -lcares -L$(CURL_LIBDIR) -lcurl -L$(PSL_LIBDIR) -lpsl
else
PKG_CFLAGS = $(shell pkg-config --cflags lua5.4 libuv openssl libcares libcurl libpsl 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs libuv openssl libcares libcurl libpsl 2>/dev/null)
endif
# iconv is in glibc; macOS and FreeBSD's ports need -liconv. dlopen (the
# live prompt's readline) needs -ldl before glibc 2.34. The compiler is
# asked when the module is linked.
ICONV_TEST = printf '\#include <iconv.h>\nint main(void){return iconv_open("a","b") == 0;}\n'
DL_TEST    = printf '\#include <dlfcn.h>\nint main(void){return dlopen("x", 0) == 0;}\n'
SYS_LIBS   = $(shell $(ICONV_TEST) | $(CC) -x c - -o /dev/null >/dev/null \
               2>&1 || echo -liconv) \
             $(shell $(DL_TEST) | $(CC) -x c - -o /dev/null >/dev/null \
               2>&1 || echo -ldl) -pthread
# luarocks passes the flags that make a loadable module here (macOS:
# -bundle -undefined dynamic_lookup); a checkout uses -shared.
LIBFLAG  ?= -shared
SRC       = $(wildcard csrc/*/*.c)
HDR       = $(wildcard csrc/*/*.h)
# The version is defined once, in csrc/core/glue.h.
VERSION  := $(shell sed -n 's/^\#define SMTPD_VERSION_NUM "\(.*\)"/\1/p' \
              csrc/core/glue.h)
ROCK      = lua-smtpd-$(VERSION)-1
ROCK_OUT ?= .
BUILD    ?= build
SO        = $(BUILD)/smtpd/core.so
luaenv    = LUA_PATH="$(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;$(CURDIR)/spec/?.lua;;" \
            LUA_CPATH="$(CURDIR)/$(1)/?.so;;" SMTPD_BUILD="$(CURDIR)/$(1)"
LUAENV    = $(call luaenv,$(BUILD))
ASAN_CFLAGS = -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer \
              -fno-sanitize-recover=undefined
# A hung spec must fail the run, not hold CI: the suite takes ~30 s.
WATCHDOG ?= timeout -k 10 900

.PHONY: all lib install deps run test test-build asan valgrind fuzz engine-main \
        fuzz-deps fuzz-short soak bench rock golden clean FORCE

all: $(SO)

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

# One object per source file, in $(BUILD)/obj/; $(BUILD)/flags records
# how they were compiled, so that changing CC, CFLAGS or TESTING rebuilds
# them. TESTING=1 builds the test-only C (csrc/testing/, fault injection)
# with -DSMTPD_TESTING: `make test`, `make asan` and `make valgrind` use
# such a build (build-test/, build-asan/); `make`, `make run`, the bench
# and luarocks leave it out.
ifeq ($(TESTING),1)
DEFS      = -DSMTPD_TESTING
endif
OBJ       = $(patsubst csrc/%.c,$(BUILD)/obj/%.o,$(SRC))
COMPILE   = $(CC) $(CFLAGS) $(WARN) $(DEFS) -fPIC -fvisibility=hidden \
            $(PKG_CFLAGS)

$(BUILD)/flags: FORCE
	@mkdir -p $(BUILD)
	@echo '$(COMPILE)' | cmp -s - $@ || echo '$(COMPILE)' > $@

$(BUILD)/obj/%.o: csrc/%.c $(HDR) $(BUILD)/flags
	@mkdir -p $(dir $@)
	$(COMPILE) -c -o $@ $<

$(SO): $(OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) $(LIBFLAG) -o $@ $(OBJ) $(PKG_LIBS) $(SYS_LIBS)

FORCE:

# The test build: build-test/ unless a BUILD is given.
TBUILD   ?= build-test
TSO       = $(TBUILD)/smtpd/core.so
test-build:
	@$(MAKE) --no-print-directory BUILD=$(TBUILD) TESTING=1 $(TSO)

# make run PORT=2525, or SMTPD_ADDR=0.0.0.0:2525 (host:port); the page
# that shows the mail caught is on WEB_ADDR.
PORT       ?= 8025
SMTPD_ADDR ?= localhost:$(PORT)
WEB_ADDR   ?= 127.0.0.1:8026
run: deps $(SO)
	$(LUAENV) $(LUA) bin/lua-smtpd -n -c DebuggingServer --web=$(WEB_ADDR) $(SMTPD_ADDR)

test: deps test-build
	$(call luaenv,$(TBUILD)) $(WATCHDOG) $(LUA) spec/run.lua $(SPEC)

# The whole suite under AddressSanitizer + UBSan.
asan: deps
	$(MAKE) BUILD=build-asan TESTING=1 CFLAGS="$(ASAN_CFLAGS)" \
	  build-asan/smtpd/core.so
	$(call luaenv,build-asan) \
	  LD_PRELOAD="$$($(CC) -print-file-name=libasan.so) $$($(CC) -print-file-name=libubsan.so)" \
	  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  $(WATCHDOG) $(LUA) spec/run.lua $(SPEC)

valgrind: deps test-build
	$(call luaenv,$(TBUILD)) $(WATCHDOG) valgrind --leak-check=full --error-exitcode=3 --errors-for-leak-kinds=definite \
	  $(LUA) spec/run.lua $(SPEC)

# libFuzzer targets over the engine (parser + session) and the TLS layer
# (tls_fuzz: with OpenSSL), ASan + UBSan.
FUZZ_TARGETS = session_fuzz split_fuzz tls_fuzz mime_fuzz proxy_fuzz \
               relay_fuzz dns_fuzz spf_fuzz dkim_fuzz authres_fuzz dmarc_fuzz \
               http_fuzz
# The pure SMTP layer (no Lua, no libuv), as the fuzzers and
# spec/c/engine_main.c link it.
SMTP_PURE    = csrc/base/buffer.c csrc/base/text.c csrc/base/codec.c \
               csrc/smtp/parser.c csrc/smtp/addr.c csrc/smtp/session.c \
               csrc/smtp/ext.c csrc/smtp/reply.c csrc/smtp/proxy.c \
               csrc/smtp/relay.c
FUZZ_SRC     = $(SMTP_PURE) csrc/mime/mime.c csrc/dns/dns.c csrc/auth/spf.c \
               csrc/auth/authres.c csrc/web/httpd.c
PURE_HDR     = csrc/base/base.h csrc/smtp/smtp.h csrc/tls/tls.h \
               csrc/mime/mime.h csrc/dns/dns.h csrc/auth/spf.h csrc/auth/authres.h \
               csrc/web/httpd.h
FUZZ_SECONDS ?= 600
FUZZ_CC      = clang -g -O1 -std=c99 -D_GNU_SOURCE -Icsrc \
               -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
fuzz/build/tls_fuzz: fuzz/tls_fuzz.c $(FUZZ_SRC) csrc/tls/tls.c $(PURE_HDR)
	@mkdir -p fuzz/build
	$(FUZZ_CC) $$(pkg-config --cflags openssl) -o $@ $< $(FUZZ_SRC) \
	  csrc/tls/tls.c $$(pkg-config --libs openssl)
fuzz/build/dkim_fuzz: fuzz/dkim_fuzz.c $(FUZZ_SRC) csrc/auth/dkim.c csrc/auth/dkim.h $(PURE_HDR)
	@mkdir -p fuzz/build
	$(FUZZ_CC) $$(pkg-config --cflags openssl) -o $@ $< $(FUZZ_SRC) \
	  csrc/auth/dkim.c $$(pkg-config --libs openssl)
fuzz/build/dmarc_fuzz: fuzz/dmarc_fuzz.c $(FUZZ_SRC) csrc/auth/dkim.c csrc/auth/dmarc.c \
                       csrc/auth/dmarc.h csrc/auth/dkim.h $(PURE_HDR)
	@mkdir -p fuzz/build
	$(FUZZ_CC) $$(pkg-config --cflags openssl) -o $@ $< $(FUZZ_SRC) \
	  csrc/auth/dkim.c csrc/auth/dmarc.c $$(pkg-config --libs openssl)
fuzz/build/%: fuzz/%.c $(FUZZ_SRC) $(PURE_HDR)
	@mkdir -p fuzz/build
	$(FUZZ_CC) -o $@ $< $(FUZZ_SRC)

# The pure SMTP layer as a program (spec/c/engine_main.c) built by
# ENGINE_CC (spec/bits32_spec.lua: gcc -m32) into ENGINE_OUT.
ENGINE_CC  ?= $(CC)
ENGINE_OUT ?= build-test/engine_main
engine-main:
	@mkdir -p $(dir $(ENGINE_OUT))
	$(ENGINE_CC) -O1 -g $(WARN) -o $(ENGINE_OUT) spec/c/engine_main.c \
	  $(SMTP_PURE)

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
soak: deps $(SO)
	bench/soak

# Not a test: lua-smtpd against smtp-sink, smtp-server, CPython smtpd and
# aiosmtpd under smtp-source, then 10,000 idle connections (bench/README.md).
bench: deps $(SO)
	$(WATCHDOG) bench/run

fuzz-short:
	$(MAKE) fuzz FUZZ_SECONDS=30

# CPython smtpd's answers to spec/conversations.lua, kept in
# spec/golden/cpython.lua for the differential spec; needs a Python with
# smtpd (3.11 or earlier). Shows what changed.
golden: deps $(SO)
	$(LUAENV) $(LUA) spec/make_golden.lua
	@git --no-pager diff --stat -- spec/golden 2>/dev/null || true

# What luarocks runs (rockspec/: build type "make"): build and install,
# with no Debian packages installed and no files outside build/.
lib: $(SO)

install: $(SO)
	install -d $(INST_LIBDIR)/smtpd $(INST_LUADIR)/smtpd $(INST_LUADIR)/smtpd/web
	install -m 755 $(SO) $(INST_LIBDIR)/smtpd/core.so
	install -m 644 lua/smtpd/*.lua $(INST_LUADIR)/smtpd/
	install -m 644 lua/smtpd/web/* $(INST_LUADIR)/smtpd/web/

# The source rock of this version, from this checkout (its files as they
# are now), for `luarocks install lua-smtpd-X.Y.Z-1.src.rock`: the
# rockspec and the tree under lua-smtpd/, as `luarocks pack` lays them out
# for a git source.
rock:
	@command -v zip >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq zip) >/dev/null || exit 1; \
	  else echo "missing zip; run:"; echo "  sudo apt-get install -y zip"; \
	    exit 1; fi; }
	@test -f rockspec/$(ROCK).rockspec || \
	  { echo "no rockspec/$(ROCK).rockspec for version $(VERSION)"; exit 1; }
	@tmp=$$(mktemp -d) && mkdir $$tmp/lua-smtpd && \
	  if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then \
	    git ls-files -z --cached --others --exclude-standard | \
	      xargs -0 sh -c 'for f; do [ -e "$$f" ] && printf "%s\0" "$$f"; done' sh | \
	      tar --null -T - -cf - | tar -C $$tmp/lua-smtpd -xf -; \
	  else \
	    cp -r Makefile README.md LICENSE CHANGELOG.md .busted bin csrc lua \
	      rockspec spec $$tmp/lua-smtpd/; \
	  fi && \
	  cp rockspec/$(ROCK).rockspec $$tmp/ && \
	  out=$$(cd $(ROCK_OUT) && pwd)/$(ROCK).src.rock && rm -f $$out && \
	  (cd $$tmp && zip -qr $$out $(ROCK).rockspec lua-smtpd) && \
	  rm -rf $$tmp && echo "$$out"

clean:
	rm -rf build build-test build-asan fuzz/build bench/.work *.src.rock
