#!/bin/sh
# Real-world Prometheus rule files that nobody here wrote, for the ruler tests: Debian's
# packaged ceph mixin alerts and the exporters' example rules. Downloaded (never installed,
# no service started) and unpacked into .cache/rules/, which git ignores; nothing fetched is
# committed. Safe to run again: a package already unpacked is skipped.
set -eu
CACHE="${RULES_CACHE:-.cache/rules}"
mkdir -p "$CACHE/debs" "$CACHE/root"
for pkg in ceph-prometheus-alerts prometheus-elasticsearch-exporter prometheus-node-exporter; do
    if ls "$CACHE/debs/${pkg}_"*.deb >/dev/null 2>&1; then
        continue
    fi
    if ! (cd "$CACHE/debs" && apt-get download "$pkg" >/dev/null 2>&1) &&
       ! { [ "$(id -u)" -eq 0 ] && apt-get update -q >/dev/null 2>&1 &&
           (cd "$CACHE/debs" && apt-get download "$pkg" >/dev/null 2>&1); }; then
        echo "fetch-rule-collections: could not download $pkg (apt unreachable?)" >&2
        continue
    fi
    dpkg-deb -x "$CACHE/debs/${pkg}_"*.deb "$CACHE/root"
done
# Unpack once more in case the root was removed but the debs kept.
for deb in "$CACHE"/debs/*.deb; do
    [ -e "$deb" ] && dpkg-deb -x "$deb" "$CACHE/root"
done
exit 0
