#!/bin/sh
# CI for {{name}}: build it, load it, run it on the simulated fleet.
# Needs the wasmonkey binary (on PATH, or its path in WASMONKEY) and the
# language's own tools; nothing of wasmonkey's source.
set -eu
cd "$(dirname "$0")"
wasmonkey=${WASMONKEY:-wasmonkey}

"$wasmonkey" plugin build .
"$wasmonkey" plugins inspect {{name}} --config try.toml
# The properties every strategy must keep, on simulated fleets and faults.
"$wasmonkey" plugin test --dir .
# Each run fails the job unless its outcome is `succeeded`.
"$wasmonkey" run --config try.toml
"$wasmonkey" run --config try.toml --execute --junit build/junit.xml
