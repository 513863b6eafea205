#!/usr/bin/env bash
# Make sure the services the tests talk to answer: PostgreSQL 15 on 127.0.0.1:5432, Redis on
# 6379 and Mosquitto on 1883. They normally run already; this starts whichever is down (root
# only), and fails clearly.
set -euo pipefail

if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "PostgreSQL is down; starting it"
    pg_ctlcluster --skip-systemctl-redirect 15 main start
  fi
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
  pg_isready -q -h 127.0.0.1 -p 5432 || { echo "PostgreSQL does not answer on 127.0.0.1:5432" >&2; exit 1; }
fi

redis_up() { [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = "PONG" ]; }
if ! redis_up; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "Redis is down; starting it"
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
  fi
  for _ in $(seq 1 30); do redis_up && break; sleep 1; done
  redis_up || { echo "Redis does not answer on 127.0.0.1:6379" >&2; exit 1; }
fi

mqtt_up() { (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null; }
if ! mqtt_up; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "Mosquitto is down; starting it"
    if [ -f /etc/mosquitto/mosquitto.conf ]; then
      runuser -u mosquitto -- mosquitto -d -c /etc/mosquitto/mosquitto.conf 2>/dev/null \
        || mosquitto -d -c /etc/mosquitto/mosquitto.conf
    else
      mosquitto -d -p 1883
    fi
  fi
  for _ in $(seq 1 30); do mqtt_up && break; sleep 1; done
  mqtt_up || { echo "Mosquitto does not answer on 127.0.0.1:1883" >&2; exit 1; }
fi
