#!/usr/bin/env bash
# Makes sure the real Prometheus and Alertmanager (Debian packages) and poppler-utils
# (pdftoppm, which renders report PDFs in the tests) are here.
# --victoria: also VictoriaMetrics (long_term tiers; `make test`, and `make run` when
# long_term.enabled; the package brings vmbackup and vmrestore too).
set -euo pipefail
need=(prometheus promtool prometheus-alertmanager amtool pdftoppm)
packages="prometheus prometheus-alertmanager poppler-utils"
if [ "${1:-}" = "--victoria" ]; then
  need+=(victoria-metrics vmbackup vmrestore)
  packages="$packages victoria-metrics"
fi
missing=()
for cmd in "${need[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd")
done
[ ${#missing[@]} -eq 0 ] && exit 0

install_cmd="apt-get update && apt-get install -y --no-install-recommends $packages"
echo "ensure-tools: missing ${missing[*]}; installing Debian's $packages" >&2
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-tools: cannot install here (need root and apt-get). Install them with:" >&2
  echo "  sudo sh -c '$install_cmd'" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $packages
# The packages start system services where systemd runs; Pulse runs its own.
for svc in prometheus prometheus-alertmanager victoria-metrics; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
    systemctl stop "$svc" || true
    systemctl disable "$svc" >/dev/null 2>&1 || true
  fi
done
for cmd in "${need[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || { echo "ensure-tools: $cmd still missing after install" >&2; exit 1; }
done
