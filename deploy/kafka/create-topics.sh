#!/usr/bin/env bash
# Create payrail's topics (DESIGN.md) on a broker, idempotently; used by docker-compose.yml
# inside the apache/kafka image. (`payrail dev run` creates the same topics itself.)
#   usage: create-topics.sh <bootstrap servers> [partitions, default 3]
set -euo pipefail
bootstrap="${1:?usage: create-topics.sh <bootstrap servers> [partitions]}"
partitions="${2:-3}"
topics=(
  payments.intents
  payments.gateway-events
  payments.lifecycle
  entitlements.events
  reconciliation.discrepancies
)
for topic in "${topics[@]}"; do
  /opt/kafka/bin/kafka-topics.sh --bootstrap-server "$bootstrap" --create --if-not-exists \
    --topic "$topic" --partitions "$partitions" --replication-factor 1
done
