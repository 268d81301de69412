#!/usr/bin/env bash
# Run only the dev stack's Kafka in the foreground: fetches the pinned jars with Maven on first
# use, formats KRaft storage once, creates the DESIGN topics, keeps data in $PAYRAIL_STATE_DIR
# (default <repo>/.state). Ctrl-C stops it. The whole stack: `make run`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
exec uv run --frozen payrail dev run --only kafka "$@"
