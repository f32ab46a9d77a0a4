#!/usr/bin/env bash
# The test command: installs what the tests need, runs the linters and the whole test suite.
# Tests that need root, QEMU and libvirt (a real live migration) run when those are available.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh --test
. .venv/bin/activate
echo "== lint: ruff, snakefmt, snakemake --lint"
ruff check src tests scripts
ruff format --check src tests scripts
snakefmt --check Snakefile workflow/rules
snakemake --lint                             # the default configuration (testbed)
snakemake --lint --configfile config/test.yaml # crafted trials (CI)
# The suite includes tests/test_readme.py: the README's own command blocks, run as written on a
# fresh clone with the plain install (a separate .venv there), then `git status` must be clean.
echo "== tests (the report screenshot is kept in test-artifacts/)"
set +e
# --durations: the 25 slowest tests in the log, to keep CI inside its time budget.
python -m pytest -ra --durations=25 "$@"
status=$?
set -e
# pytest's 5 means no test was collected: that is a failure here, not a success.
exit $status
