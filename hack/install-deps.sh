#!/usr/bin/env bash
# Installs the Debian packages the tests and the demo run for real: brokers,
# protoc and tmux. Services are not started here; internal/testenv starts its
# own instances on loopback ports. Idempotent. SWELL_DEPS=demo installs only
# what the local demo runs (redis-server, tmux, psmisc).
source "$(dirname "$0")/lib.sh"

pkgs=(redis-server rabbitmq-server nats-server burrow protobuf-compiler tmux psmisc python3-kubernetes python3-redis python3-pika python3-kafka python3-snappy zookeeperd prometheus)
if [[ "${SWELL_DEPS:-all}" == demo ]]; then pkgs=(redis-server tmux psmisc); fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [[ ${#missing[@]} == 0 ]]; then log "debian packages present"; exit 0; fi

SUDO=""
[[ $(id -u) == 0 ]] || SUDO=sudo
log "installing ${missing[*]}"
# Keep package scripts from starting system-wide daemons: tests start their own.
if [[ ! -e /usr/sbin/policy-rc.d ]]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
log "debian packages installed"
