# Included after PGXS by the Makefile and bench/Makefile.
# PGXS passes the flags configure found in the compiler that built the
# server, which this one may lack: PostgreSQL 18 trees built by a newer gcc
# or clang pass -Wmissing-variable-declarations, which gcc 12 rejects.  If
# $(CC) rejects the set, keep what it accepts, testing each flag after those
# kept before it, as configure does (-Wformat-security needs -Wall first).
cc_accepts = $(shell $(CC) -Werror $(1) -fsyntax-only -x c /dev/null >/dev/null 2>&1 && echo yes)
ifeq ($(call cc_accepts,$(CFLAGS)),)
accepted_cflags :=
$(foreach flag,$(CFLAGS),$(if $(call cc_accepts,$(accepted_cflags) $(flag)),$(eval accepted_cflags += $(flag))))
override CFLAGS := $(accepted_cflags)
endif
