#!/usr/bin/env bash
# Creates the virtual environment with dbt-core and dbt-duckdb that the real-dbt suite
# (`cargo test --test dbt`) runs, at ${HANDOFF_DBT_VENV:-$HOME/.cache/handoff/dbt-venv}, and
# reuses it when it already has a working dbt. Prints the venv's path on its last line.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${HANDOFF_DBT_VENV:-$HOME/.cache/handoff/dbt-venv}"
export DO_NOT_TRACK=1 DBT_SEND_ANONYMOUS_USAGE_STATS=false

if ! "$venv/bin/dbt" --version >/dev/null 2>&1; then
  echo "creating the dbt virtual environment at $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
fi
"$venv/bin/python" -c 'import dbt.adapters.duckdb, duckdb' >/dev/null
echo "$venv"
