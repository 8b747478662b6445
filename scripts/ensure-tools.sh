#!/usr/bin/env bash
# Makes sure the real Prometheus and Alertmanager (Debian packages), poppler-utils
# (pdftoppm, which renders report PDFs in the tests), node and npm (which run the Segment Node
# SDK in the tests) and chromium (the browser test of CORS and sendBeacon) are here.
set -euo pipefail
need=(prometheus promtool prometheus-alertmanager amtool pdftoppm node npm chromium)
missing=()
for cmd in "${need[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd")
done
[ ${#missing[@]} -eq 0 ] && exit 0

install_cmd="apt-get update && apt-get install -y --no-install-recommends prometheus prometheus-alertmanager poppler-utils nodejs npm chromium"
echo "ensure-tools: missing ${missing[*]}; installing Debian's prometheus, prometheus-alertmanager, poppler-utils, nodejs, npm and chromium" >&2
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-tools: cannot install here (need root and apt-get). Install them with:" >&2
  echo "  sudo sh -c '$install_cmd'" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends prometheus prometheus-alertmanager poppler-utils \
  nodejs npm chromium
# The packages start system services where systemd runs; Pulse runs its own.
for svc in prometheus prometheus-alertmanager; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
    systemctl stop "$svc" || true
    systemctl disable "$svc" >/dev/null 2>&1 || true
  fi
done
for cmd in "${need[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || { echo "ensure-tools: $cmd still missing after install" >&2; exit 1; }
done
