# alive_worker: the C shim is built by PGXS; the Python package and its cffi
# embedding library by setup.py, into a wheel that `make install` puts into a
# virtual environment the server's OS user can read.
#
#   make && make install                 build and install (install as root)
#   make PG_CONFIG=/path/to/pg_config    pick the server
#   make install PYTHON_ENV=/some/dir    pick where the Python side lives
#   make demo / make test                set everything up, then demo / test
#   make test-all                        the suite on PostgreSQL 15, 16, 17 and 18
#   make bench                           alive_worker against its baselines (BENCHMARKS.md)

EXTENSION = alive_worker
DATA = $(wildcard sql/alive_worker--*.sql)
MODULE_big = alive_worker
OBJS = alive_worker.o crash_guard.o failure_log.o tick_timeout.o worker_status.o sql_functions.o
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

# Where the shim finds the Python side, fixed at build time.
CONFIG_HEADER = build/alive_worker_config.h
PG_CPPFLAGS = -Ibuild

PGXS := $(shell $(PG_CONFIG) --pgxs 2>/dev/null)
ifeq ($(wildcard $(PGXS)),)
ifeq ($(filter demo test test-all bench,$(MAKECMDGOALS)),)
$(error no PGXS from "$(PG_CONFIG)": install postgresql-server-dev-15, or run make test / make demo, which do)
endif
else
include $(PGXS)
include cflags.mk
endif

# The bridge is compiled with the shim's flags, less those for a PGXS module:
# the shim finds the bridge's entry points with dlsym, so they stay visible.
BRIDGE_CFLAGS = $(filter-out $(CFLAGS_SL) $(CFLAGS_SL_MODULE),$(CFLAGS))

PYTHON_FILES = setup.py pyproject.toml $(wildcard alive_worker/*.py alive_worker/*/*.py alive_worker/*.c alive_worker/*.h)
WHEEL_STAMP = build/wheel/.built

all: $(WHEEL_STAMP)
# The config header names the server and the compiler command, so building
# for another major in this checkout rebuilds all that depends on it.
$(OBJS) $(OBJS:.o=.bc): $(CONFIG_HEADER) alive_worker/_compat.h
alive_worker.o alive_worker.bc: alive_worker.h alive_worker/_bridge.h alive_worker/_table_owner.h crash_guard.h failure_log.h tick_timeout.h worker_status.h
sql_functions.o sql_functions.bc: alive_worker.h alive_worker/_table_owner.h worker_status.h
worker_status.o worker_status.bc: worker_status.h
crash_guard.o crash_guard.bc: crash_guard.h
failure_log.o failure_log.bc: failure_log.h
tick_timeout.o tick_timeout.bc: alive_worker.h tick_timeout.h

$(CONFIG_HEADER): FORCE
	@$(SERVER_PYTHON) scripts/write_config_header.py "$@" "$(SERVER_PYTHON)" "$(PYTHON_ENV)" "$(PG_CONFIG)" \
		"$(strip $(CC) $(CFLAGS))"

$(BUILD_ENV)/.ready: requirements/build.txt requirements/runtime.txt requirements/dev.txt
	scripts/make-venv "$(SERVER_PYTHON)" "$(BUILD_ENV)" requirements/dev.txt
	touch $@

$(WHEEL_STAMP): $(BUILD_ENV)/.ready $(CONFIG_HEADER) $(PYTHON_FILES)
	rm -rf build/wheel build/lib.* build/temp.* build/bdist.*
	PG_CONFIG="$(PG_CONFIG)" CC="$(CC)" ALIVE_WORKER_CFLAGS="$(strip $(BRIDGE_CFLAGS))" \
		scripts/build-wheel "$(BUILD_ENV)/bin/python" build/wheel
	touch $@

# The alive-worker command goes beside the server's own programs (psql,
# pg_ctl), as PGXS installs an extension's scripts.
install: install-python
install-python: $(WHEEL_STAMP)
	scripts/make-venv "$(SERVER_PYTHON)" "$(PYTHON_ENV)" requirements/runtime.txt build/wheel/alive_worker-*.whl
	ln -sfn "$(PYTHON_ENV)/bin/alive-worker" "$(DESTDIR)$(bindir)/alive-worker"

clean: clean-python
clean-python:
	rm -rf build alive_worker/_native*.so *.egg-info

demo:
	PG_CONFIG="$(PG_CONFIG)" scripts/demo

test:
	PG_CONFIG="$(PG_CONFIG)" scripts/test $(PYTEST_ARGS)

test-all:
	scripts/test-all $(PYTEST_ARGS)

bench:
	PG_CONFIG="$(PG_CONFIG)" BENCH_ARGS="$(BENCH_ARGS)" scripts/bench

.PHONY: FORCE install-python clean-python demo test test-all bench
