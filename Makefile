# alive_worker: the C shim is built by PGXS; the Python package and its cffi
# embedding library by setup.py, into a wheel that `make install` puts into a
# virtual environment the server's OS user can read.
#
#   make && make install                 build and install (install as root)
#   make PG_CONFIG=/path/to/pg_config    pick the server
#   make install PYTHON_ENV=/some/dir    pick where the Python side lives
#   make demo / make test                set everything up, then demo / test
#   make unit                            the unit tests alone: no server, seconds
#   make test-all                        the suite on PostgreSQL 15, 16, 17 and 18
#   make bench                           alive_worker against its baselines (docs/BENCHMARKS.md)
#   make deb / make installcheck-deb     the Debian package; install, test and remove it (as root)
#   make dist                            the PGXN release zip, in build/dist/

EXTENSION = alive_worker
DATA = $(wildcard sql/alive_worker--*.sql)
MODULE_big = alive_worker
# The shim: alive_worker.c, and its helpers in src/, one .c/.h per concern.
OBJS = alive_worker.o $(patsubst %.c,%.o,$(wildcard src/*.c))
PGFILEDESC = "alive_worker - heartbeat background worker with Python ticks"

PG_CONFIG ?= pg_config
# A Python with a shared libpython, readable by the server's OS user.  Kept
# as SERVER_PYTHON too, since PGXS sets PYTHON to the Python that the
# server's configure found, if any.
PYTHON ?= /usr/bin/python3
SERVER_PYTHON := $(PYTHON)
# The server's virtual environment: one per server installation, since the
# embedding library is built against that server's headers.
PYTHON_ENV ?= $(shell $(PG_CONFIG) --pkglibdir 2>/dev/null)/alive_worker
# The build's own virtual environment (setuptools, cffi, test tools).
BUILD_ENV ?= .venv
# PYTHON_DEPS=system downloads nothing, as a distribution's build must
# (debian/rules): the embedding library is compiled with the system's cffi,
# and the server's environment sees the system's packages (Debian's
# python3-cffi-backend, python3-psycopg, python3-prometheus-client) instead
# of the pins in scripts/requirements/runtime.txt.
PYTHON_DEPS ?= pinned

# Where the shim finds the Python side, fixed at build time.
CONFIG_HEADER = build/alive_worker_config.h
PG_CPPFLAGS = -Ibuild -Isrc -I$(libpq_srcdir)
# The client-path probe (src/client_probe.c) connects with libpq, as
# contrib/dblink and postgres_fdw do; libpq is no libpython, and the
# postmaster may map it.
SHLIB_LINK_INTERNAL = $(libpq)

PGXS := $(shell $(PG_CONFIG) --pgxs 2>/dev/null)
ifeq ($(wildcard $(PGXS)),)
ifeq ($(filter demo test unit test-all bench deb installcheck-deb dist,$(MAKECMDGOALS)),)
$(error no PGXS from "$(PG_CONFIG)": install postgresql-server-dev-15, or run make test / make demo, which do)
endif
else
include $(PGXS)
include src/cflags.mk
endif

# The bridge is compiled with the shim's flags, less those for a PGXS module:
# the shim finds the bridge's entry points with dlsym, so they stay visible.
BRIDGE_CFLAGS = $(filter-out $(CFLAGS_SL) $(CFLAGS_SL_MODULE),$(CFLAGS))

PYTHON_FILES = setup.py pyproject.toml $(wildcard alive_worker/*.py alive_worker/*/*.py alive_worker/*/*/*.py alive_worker/*.c alive_worker/*.h)
WHEEL_STAMP = build/wheel/.built
SYSTEM_STAMP = build/system/.built
PYTHON_STAMP = $(if $(filter system,$(PYTHON_DEPS)),$(SYSTEM_STAMP),$(WHEEL_STAMP))

all: $(PYTHON_STAMP)
# Every object depends on every header: the shim is small, and a rule that
# cannot go stale beats a list kept by hand.  The config header names the
# server and the compiler command, so building for another major in this
# checkout rebuilds all that depends on it.
SHIM_HEADERS = $(wildcard src/*.h alive_worker/*.h)
$(OBJS) $(OBJS:.o=.bc): $(CONFIG_HEADER) $(SHIM_HEADERS)

$(CONFIG_HEADER): FORCE
	@$(SERVER_PYTHON) scripts/write_config_header.py "$@" "$(SERVER_PYTHON)" "$(PYTHON_ENV)" "$(PG_CONFIG)" \
		"$(strip $(CC) $(CFLAGS))"

$(BUILD_ENV)/.ready: scripts/requirements/build.txt scripts/requirements/runtime.txt scripts/requirements/dev.txt
	scripts/make-venv "$(SERVER_PYTHON)" "$(BUILD_ENV)" scripts/requirements/dev.txt
	touch $@

$(WHEEL_STAMP): $(BUILD_ENV)/.ready $(CONFIG_HEADER) $(PYTHON_FILES)
	rm -rf build/wheel build/lib.* build/temp.* build/bdist.*
	PG_CONFIG="$(PG_CONFIG)" CC="$(CC)" ALIVE_WORKER_CFLAGS="$(strip $(BRIDGE_CFLAGS))" \
		scripts/build-wheel "$(BUILD_ENV)/bin/python" build/wheel
	touch $@

$(SYSTEM_STAMP): $(CONFIG_HEADER) $(PYTHON_FILES)
	PG_CONFIG="$(PG_CONFIG)" CC="$(CC)" ALIVE_WORKER_CFLAGS="$(strip $(BRIDGE_CFLAGS))" \
		scripts/build-system-python "$(SERVER_PYTHON)" build/system
	touch $@

# The alive-worker command goes beside the server's own programs (psql,
# pg_ctl), as PGXS installs an extension's scripts.
install: install-python
install-python: $(PYTHON_STAMP)
ifeq ($(PYTHON_DEPS),system)
	scripts/install-system-python "$(SERVER_PYTHON)" build/system "$(PYTHON_ENV)" "$(DESTDIR)"
	$(MKDIR_P) "$(DESTDIR)$(bindir)"
else
	scripts/make-venv "$(SERVER_PYTHON)" "$(PYTHON_ENV)" scripts/requirements/runtime.txt build/wheel/alive_worker-*.whl
endif
	ln -sfn "$(PYTHON_ENV)/bin/alive-worker" "$(DESTDIR)$(bindir)/alive-worker"

clean: clean-python
clean-python:
	rm -rf build alive_worker/_native*.so *.egg-info

demo:
	PG_CONFIG="$(PG_CONFIG)" scripts/demo

# Set-up (packages, servers, build and install), lint, the unit tests, then
# the suite on clusters.
test:
	PG_CONFIG="$(PG_CONFIG)" scripts/test-setup
	scripts/lint
	scripts/test-unit
	PG_CONFIG="$(PG_CONFIG)" scripts/test-run --ignore=tests/unit $(PYTEST_ARGS)

unit: $(BUILD_ENV)/.ready
	scripts/test-unit

test-all:
	scripts/test-all $(PYTEST_ARGS)

bench:
	PG_CONFIG="$(PG_CONFIG)" BENCH_ARGS="$(BENCH_ARGS)" scripts/bench

# alive-worker run against pt-heartbeat, on servers without preload.
bench-runner:
	PG_CONFIG="$(PG_CONFIG)" BENCH_ARGS="$(BENCH_ARGS)" scripts/bench-runner

# debian/ builds postgresql-MAJOR-alive-worker for Debian's servers
# (debian/pgversions), from a copy of HEAD, into build/deb/.
deb:
	scripts/build-deb

installcheck-deb:
	scripts/installcheck-deb $(PYTEST_ARGS)

dist:
	scripts/dist

.PHONY: FORCE install-python clean-python demo test unit test-all bench bench-runner deb installcheck-deb dist
