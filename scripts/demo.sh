#!/usr/bin/env bash
# `make demo`: the main job on the embedded defaults, with nothing but this repository.
set -euo pipefail
cd "$(dirname "$0")/.."
DTM=.venv/bin/dtm
work=$(mktemp -d -t dtm-demo-XXXXXX)
trap 'rm -rf "$work"' EXIT

echo "== installed plugins"
$DTM plugin list
echo "== a plugin process: create, then read a file through localfile"
$DTM plugin call localfile Create --options "{\"path\": \"$work/hello.txt\", \"content\": \"hello from dtm\"}"
$DTM plugin call localfile Read --options "{\"path\": \"$work/hello.txt\"}"
