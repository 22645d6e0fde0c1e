#!/usr/bin/env bash
# Debian packages the tests use: the CNCF distribution registry (docker-registry), the real
# clients (skopeo, podman, containerd/ctr, docker.io's dockerd), iproute2 and util-linux for the
# network namespace Docker's test runs in (ip netns, nsenter), htpasswd and openssl for the auth
# modes, docker-compose for the compose file check. Idempotent; installing docker.io starts no daemon (the tests start their own).
# `--bench` adds what `npm run bench` compares against: nginx, aria2 (aria2c), mktorrent, opentracker.
set -euo pipefail
pkgs=(docker-registry skopeo podman containerd runc docker.io iproute2 util-linux apache2-utils openssl curl ca-certificates)
if [ "${1:-}" = "--bench" ]; then pkgs+=(nginx aria2 mktorrent opentracker); fi
# Debian's docker-compose (1.29) checks compose/docker-compose.yml (test/unit/compose); added when apt offers it.
# A machine that never ran apt-get update knows no candidates yet; the policy is read whole first
# (grep -q closing the pipe early would fail the test under pipefail).
if [ "$(id -u)" = 0 ] && ! compgen -G '/var/lib/apt/lists/*Packages*' >/dev/null; then apt-get update -q; fi
policy="$(apt-cache policy docker-compose 2>/dev/null || true)"
if grep -q 'Candidate: [0-9]' <<<"$policy"; then pkgs+=(docker-compose); fi
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
  # policy-rc.d (where present) keeps dockerd/containerd services from being started by the install
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
