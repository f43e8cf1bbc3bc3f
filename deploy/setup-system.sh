#!/usr/bin/env bash
# Debian packages the local stack and its tests need. Idempotent and quiet when
# everything is present; uses sudo when not root.
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }
have mosquitto || need+=(mosquitto)
have mosquitto_pub || need+=(mosquitto-clients)
have kcat || need+=(kcat)
have java || need+=(openjdk-17-jre-headless)
have mvn || need+=(maven)
# The dashboard's browser tests drive Debian's Chromium through Playwright (no browser download).
have chromium || need+=(chromium)
# Go and Rust (for building InfluxDB) come with the machine image; Debian's are
# too old for InfluxDB 2.7, so deploy/influxdb/build.sh checks for them itself.

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
echo "Installing Debian packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
