#!/usr/bin/env bash
# Debian packages the tests use: the CNCF distribution registry (docker-registry),
# skopeo as the client, htpasswd and openssl for the auth modes. Idempotent.
set -euo pipefail
pkgs=(docker-registry skopeo apache2-utils openssl curl ca-certificates)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "install-deps: missing Debian packages: ${missing[*]} (run as root to install them)" >&2
    exit 1
  fi
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
