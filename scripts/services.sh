#!/usr/bin/env bash
# Starts what the tests need and is not running: PostgreSQL on 127.0.0.1:5432 and Redis on
# 127.0.0.1:6379. Fails if either cannot be reached afterwards.
set -euo pipefail

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
redis_up() { [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = "PONG" ]; }

if ! pg_up; then
  echo "services: starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
fi
if ! redis_up; then
  echo "services: starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
fi
for _ in $(seq 1 50); do
  if pg_up && redis_up; then
    echo "services: PostgreSQL and Redis are up"
    exit 0
  fi
  sleep 0.2
done
pg_up || echo "services: PostgreSQL is not reachable on 127.0.0.1:5432" >&2
redis_up || echo "services: Redis is not reachable on 127.0.0.1:6379" >&2
exit 1
