#!/usr/bin/env bash
# The full test suite (`make test`, called by .ci/run). pytest's exit code 5 ("no tests collected")
# is reported as a run that executed no test, not treated as a failure; any other code is returned.
set -uo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m pytest -ra "$@"
rc=$?
if [ $rc -eq 5 ]; then
  echo "tests: pytest collected no tests (exit 5): this run executed NO test — reported, not a failure"
  exit 0
fi
exit $rc
