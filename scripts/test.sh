#!/usr/bin/env bash
# Runs the whole test suite on any machine: starts a throwaway PostgreSQL cluster unless
# DATABASE_URL is set, builds, runs every test, and stops the cluster again.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${DATABASE_URL:-}" ]; then
  # shellcheck source=scripts/throwaway-postgres.sh
  source scripts/throwaway-postgres.sh
  start_throwaway_postgres
  trap stop_throwaway_postgres EXIT
fi
echo "test database: ${DATABASE_URL}"

# The end-to-end tests start the real binaries: build them first.
cargo build --workspace --bins --locked
cargo test --workspace --locked "$@"
