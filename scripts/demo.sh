#!/usr/bin/env bash
# `make demo`: the main jobs on the embedded defaults (SQLite, plugins started by the core),
# with nothing but this repository.
set -euo pipefail
cd "$(dirname "$0")/.."
DTM=.venv/bin/dtm

echo "== toolchain as code: examples/quickstart.yaml"
rm -rf examples/.quickstart
$DTM apply -f examples/quickstart.yaml -y
echo
echo "== a second plan finds nothing to do"
$DTM plan -f examples/quickstart.yaml
$DTM verify -f examples/quickstart.yaml
echo
echo "== engineering data lake: examples/gitlake.yaml (this repository's history)"
LAKE=examples/.quickstart/lake.db
$DTM pipeline run -f examples/gitlake.yaml --database "$LAKE"
echo "summary of the domain layer:"
.venv/bin/python scripts/lake_summary.py "$LAKE"
