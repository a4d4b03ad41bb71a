#!/usr/bin/env bash
# Lint, type-check and test everything (installs what the tests need first).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --dev
echo "==> ruff" >&2
.venv/bin/ruff check aios tests
.venv/bin/ruff format --check aios tests
echo "==> mypy (strict on aios/)" >&2
.venv/bin/mypy aios
echo "==> vitest (the console's units)" >&2
npm --prefix web test --silent
echo "==> pytest" >&2
.venv/bin/pytest "$@"
