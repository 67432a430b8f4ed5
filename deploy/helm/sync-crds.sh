#!/bin/sh
# Copy the repository's CRDs (the one source of truth, crds/) into the chart. Helm installs
# charts' crds/ on first install only; see docs/operations.md for upgrades.
# tests/packaging/test_chart.py fails when the chart's copies drift from crds/.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
src="$here/../../crds"
dst="$here/kubgp/crds"
rm -rf "$dst"
mkdir -p "$dst"
cp "$src"/*.yaml "$dst"/
