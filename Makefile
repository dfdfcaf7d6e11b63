# lakepipe: two commands for a new user, `make demo` and `make test`. Every step is idempotent: a stamp
# file records what was done, so a second run takes seconds.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
AIRFLOW_VENV := .venv-airflow
LAKEPIPE := $(BIN)/lakepipe
export GX_ANALYTICS_ENABLED := false

.PHONY: help setup postgres demo test test-platforms test-scenarios test-unit chaos bench up down status jars clean distclean cluster-up cluster-down

help:
	@echo "make demo   set up, start the local Kafka broker, and run the clickstream pipeline end to end"
	@echo "make test   set up, start the local Kafka broker, and run the test suite"
	@echo "make test-platforms   the tests on other platforms: spark-submit, a standalone cluster, the wheel, the notebooks"
	@echo "make test-scenarios   the long fault scenarios: a broker outage, SIGKILLs of runs, backfills and the Connect worker"
	@echo "make chaos  SIGKILL a run of all four pipelines at random moments, drain, check every invariant (QUICK=1: 3 kills)"
	@echo "make bench  the benchmarks, ~80 minutes on 2 cores (ONLY=P2,L1: some figures; QUICK=1: a smoke run; VERBOSE=1: Spark's log on the console)"
	@echo "make up / make down   start / stop the local broker; make clean removes tables and broker data"
	@echo "make cluster-up / make cluster-down   start / stop a local Spark standalone cluster (master + 2 workers)"

setup: $(VENV)/.installed $(AIRFLOW_VENV)/.installed jars postgres

# PostgreSQL's server binaries, for the local change-data-capture source (`lakepipe cdc up`); Debian's package.
postgres:
	@ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; } \
	  || { echo "PostgreSQL server not found: install it (apt-get install postgresql)"; exit 1; }; }

$(VENV)/.installed: pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11 or run make PYTHON=/path/to/python3.11"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade "pip==25.3"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[spark,notebooks,test]'
	@touch $@

# Apache Airflow in a venv of its own (its ~130 packages stay out of lakepipe's), for the test that loads the DAGs
# of infra/airflow. The Spark provider without its dependencies: they would install pyspark-client over PySpark.
$(AIRFLOW_VENV)/.installed: infra/airflow/requirements.txt
	@test -x $(AIRFLOW_VENV)/bin/python || $(PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r infra/airflow/requirements.txt
	$(AIRFLOW_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps apache-airflow-providers-apache-spark==6.3.4
	@touch $@

jars: .jars/spark/.resolved .jars/kafka/.resolved .jars/connect/.resolved .jars/debezium/.resolved .jars/metastore/.resolved .jars/localfs/.built .jars/spark/.jsonparse

# Hadoop's local file system without a child process per file and rename (infra/localfs; see LOCAL_FS_CONF in
# pipelines/platform/session.py), compiled against PySpark's own Hadoop jar. It needs a JDK's javac: without one,
# local sessions keep Hadoop's default local file system (slower, same results).
LOCALFS_SRC := $(wildcard infra/localfs/src/io/lakepipe/fs/*.java)
.jars/localfs/.built: $(LOCALFS_SRC) $(VENV)/.installed
	@rm -rf .jars/localfs && mkdir -p .jars/localfs/classes
	@if command -v javac >/dev/null && command -v jar >/dev/null; then \
	  hadoop=$$(ls $$($(BIN)/python -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')/jars/hadoop-client-api-*.jar) \
	  && javac -nowarn --release 17 -cp "$$hadoop" -d .jars/localfs/classes $(LOCALFS_SRC) \
	  && jar cf .jars/localfs/lakepipe-localfs.jar -C .jars/localfs/classes . ; \
	else echo "javac not found: local Spark sessions keep Hadoop's own local file system (install a JDK 17 for the faster one)"; fi
	@rm -rf .jars/localfs/classes && touch $@

# lakepipe's JVM code for Spark (infra/jsonparse): silver's one-pass JSON read for a contract (see
# pipelines/engine/validation.py) and gold's sessions state (`state: jvm`, pipelines/engine/gold/sessions.py),
# compiled against PySpark's own jars into .jars/spark, so that every session and `--jars` list of .jars/spark/*.jar
# carries it. Without a JDK's javac, silver parses JSON with Spark SQL expressions alone (slower, the same rows).
JSONPARSE_SRC := $(wildcard infra/jsonparse/src/io/lakepipe/*/*.java)
.jars/spark/.jsonparse: $(JSONPARSE_SRC) .jars/spark/.resolved $(VENV)/.installed
	@rm -rf .jars/jsonparse-classes .jars/spark/lakepipe-jsonparse.jar && mkdir -p .jars/jsonparse-classes
	@if command -v javac >/dev/null && command -v jar >/dev/null; then \
	  spark=$$($(BIN)/python -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')/jars \
	  && javac -nowarn --release 17 -cp "$$spark/*" -d .jars/jsonparse-classes $(JSONPARSE_SRC) \
	  && jar cf .jars/spark/lakepipe-jsonparse.jar -C .jars/jsonparse-classes . ; \
	else echo "javac not found: silver parses JSON with Spark SQL expressions alone (install a JDK 17 for the faster parse)"; fi
	@rm -rf .jars/jsonparse-classes && touch $@

.jars/%/.resolved: infra/%/pom.xml
	@command -v mvn >/dev/null || { echo "mvn not found: install Maven (e.g. apt-get install maven)"; exit 1; }
	@command -v java >/dev/null || { echo "java not found: install a Java 17 runtime (e.g. apt-get install openjdk-17-jre-headless)"; exit 1; }
	rm -rf .jars/$*
	mvn --batch-mode --quiet -Dstyle.color=never -f infra/$*/pom.xml dependency:copy-dependencies
	@touch $@

up: setup
	$(LAKEPIPE) up

down:
	@test -x $(LAKEPIPE) && { $(LAKEPIPE) cdc down; $(LAKEPIPE) down; } || true

status:
	$(LAKEPIPE) status

# A Spark standalone cluster on this machine (a master and two workers, each its own JVM from PySpark's jars);
# jobs go there with `lakepipe cluster submit jobs/run_pipeline.py --pipeline clickstream --once`.
cluster-up: up
	$(LAKEPIPE) cluster up

cluster-down:
	@test -x $(LAKEPIPE) && $(LAKEPIPE) cluster down || true

demo: up
	$(LAKEPIPE) demo --env demo --fresh

# Three pytest workers, one test file each at a time (each its own Spark session): most of a test's time is waiting
# (JVM starts, Kafka, micro-batch triggers), so three share 2 cores. PYTEST_ARGS="-n 0" runs them one by one.
# The platform tests (spark-submit, a Spark standalone cluster, the built wheel in a fresh venv, the notebooks: their
# own JVMs, and the cluster's three slow everything beside them) are `make test-platforms`, the long fault scenarios
# (SIGKILLs, a broker outage) `make test-scenarios`; CI runs all three.
test: up
	$(BIN)/python -m pytest -q -n 3 --dist loadfile -m "not platform and not scenario" $(PYTEST_ARGS)

test-platforms: up
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m platform $(PYTEST_ARGS)

chaos: up
	$(BIN)/python -m tests.chaos $(if $(QUICK),--trials 3 --kills 1,) $(CHAOS_ARGS)

test-scenarios: up
	$(BIN)/python -m pytest -q -m scenario $(PYTEST_ARGS)

bench: up .jars/kafka-tools/.resolved
	$(BIN)/python -m pipelines.bench $(if $(QUICK),--quick,) $(if $(ONLY),--only $(ONLY),) $(if $(VERBOSE),--verbose,)

test-unit: setup
	$(BIN)/python -m pytest -q tests/unit $(PYTEST_ARGS)

clean: down cluster-down
	rm -rf lakehouse .lakepipe bench-results spark-warehouse

distclean: clean
	rm -rf $(VENV) $(AIRFLOW_VENV) .jars
