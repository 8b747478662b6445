#!/usr/bin/env bash
# Makes sure the real servers and tools Pulse runs (Debian packages) are here.
#   scripts/ensure-tools.sh run    only what `pulse up` needs (Prometheus, Alertmanager)
#   scripts/ensure-tools.sh [test] also what the tests start: node_exporter (hosts of a real
#                                  platform often run it), pdftoppm (renders report PDFs),
#                                  node + npm (the Segment Node SDK), chromium (the browser
#                                  test of CORS and sendBeacon)
# One row per command: "command package".
set -euo pipefail
mode=${1:-test}
tools=("prometheus prometheus" "promtool prometheus"
       "prometheus-alertmanager prometheus-alertmanager" "amtool prometheus-alertmanager")
if [ "$mode" != run ]; then
  tools+=("prometheus-node-exporter prometheus-node-exporter" "pdftoppm poppler-utils"
          "node nodejs" "npm npm" "chromium chromium")
fi
need=(); packages=(); missing=()
for row in "${tools[@]}"; do
  read -r cmd pkg <<<"$row"
  need+=("$cmd")
  [[ " ${packages[*]} " == *" $pkg "* ]] || packages+=("$pkg")
  command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "ensure-tools: ${need[*]} already installed" >&2
  exit 0
fi

install_cmd="apt-get update && apt-get install -y --no-install-recommends ${packages[*]}"
echo "ensure-tools: missing ${missing[*]}; installing Debian's ${packages[*]} (apt-get)" >&2
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-tools: cannot install here (need root and apt-get). Install them with:" >&2
  echo "  sudo sh -c '$install_cmd'" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${packages[@]}"
# The packages start system services where systemd runs; Pulse runs its own.
for svc in prometheus prometheus-alertmanager prometheus-node-exporter; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
    systemctl stop "$svc" || true
    systemctl disable "$svc" >/dev/null 2>&1 || true
  fi
done
for cmd in "${need[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || { echo "ensure-tools: $cmd still missing after install" >&2; exit 1; }
done
