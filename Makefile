# alive_worker: the C shim is built by PGXS; the Python package and its cffi
# embedding library by setup.py, into a wheel that `make install` puts into a
# virtual environment the server's OS user can read.
#
#   make && make install                 build and install (install as root)
#   make PG_CONFIG=/path/to/pg_config    pick the server
#   make install PYTHON_ENV=/some/dir    pick where the Python side lives
#   make demo / make test                set everything up, then demo / test

MODULE_big = alive_worker
OBJS = alive_worker.o crash_guard.o failure_log.o
PGFILEDESC = "alive_worker - heartbeat background worker with Python ticks"

PG_CONFIG ?= pg_config
# A Python with a shared libpython, readable by the server's OS user.
PYTHON ?= /usr/bin/python3
# The server's virtual environment: one per server installation, since the
# embedding library is built against that server's headers.
PYTHON_ENV ?= $(shell $(PG_CONFIG) --pkglibdir 2>/dev/null)/alive_worker
# The build's own virtual environment (setuptools, cffi, test tools).
BUILD_ENV ?= .venv

# Where the shim finds the Python side, fixed at build time.
CONFIG_HEADER = build/alive_worker_config.h
PG_CPPFLAGS = -Ibuild

PGXS := $(shell $(PG_CONFIG) --pgxs 2>/dev/null)
ifneq ($(wildcard $(PGXS)),)
include $(PGXS)
else ifeq ($(filter demo test,$(MAKECMDGOALS)),)
$(error no PGXS from "$(PG_CONFIG)": install postgresql-server-dev-15, or run make test / make demo, which do)
endif

PYTHON_FILES = setup.py pyproject.toml $(wildcard alive_worker/*.py alive_worker/*.c alive_worker/*.h)
WHEEL_STAMP = build/wheel/.built

all: $(WHEEL_STAMP)
alive_worker.o: $(CONFIG_HEADER) alive_worker/_bridge.h crash_guard.h failure_log.h

$(CONFIG_HEADER): FORCE
	@$(PYTHON) scripts/write_config_header.py "$@" "$(PYTHON)" "$(PYTHON_ENV)" "$(PG_CONFIG)"

$(BUILD_ENV)/.ready: requirements/build.txt requirements/runtime.txt requirements/dev.txt
	scripts/make-venv "$(PYTHON)" "$(BUILD_ENV)" requirements/dev.txt
	touch $@

$(WHEEL_STAMP): $(BUILD_ENV)/.ready $(CONFIG_HEADER) $(PYTHON_FILES)
	rm -rf build/wheel build/lib.* build/temp.* build/bdist.*
	PG_CONFIG="$(PG_CONFIG)" $(BUILD_ENV)/bin/python -m pip wheel --quiet --no-deps \
		--no-build-isolation --wheel-dir build/wheel .
	touch $@

install: install-python
install-python: $(WHEEL_STAMP)
	scripts/make-venv "$(PYTHON)" "$(PYTHON_ENV)" requirements/runtime.txt build/wheel/alive_worker-*.whl

clean: clean-python
clean-python:
	rm -rf build alive_worker/_native*.so *.egg-info

demo:
	PG_CONFIG="$(PG_CONFIG)" scripts/demo

test:
	PG_CONFIG="$(PG_CONFIG)" scripts/test $(PYTEST_ARGS)

.PHONY: FORCE install-python clean-python demo test
