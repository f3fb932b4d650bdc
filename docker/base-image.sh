#!/usr/bin/env bash
# Build a Python base image from Debian packages; print its tag on stdout.
#
# Usage:  bash docker/base-image.sh [TAG]      (default deployer-base/python:3.11-bookworm)
#
# Why: where `python:X.Y-slim` cannot be pulled (air-gapped sites, this project's
# CI), the honest base is one made from the distribution's own packages, fetched
# from the mirror apt on this host already uses:
#   debootstrap --variant=minbase SUITE ROOTFS MIRROR  ->  tar | docker import
# The result behaves like python:X.Y-slim for Dockerfiles written against it:
# `python`/`python3`/`pip` on PATH, pip may install into the system Python
# (PEP 668 allows container images to drop the EXTERNALLY-MANAGED marker),
# ca-certificates present, no apt lists/docs/caches.
#
# Idempotent and fast when warm:
#   * the image exists with the same recipe label  -> nothing to do;
#   * the rootfs tarball is cached under $CACHE_DIR -> `docker import` only (seconds),
#     which is what a fresh engine data-root needs;
#   * otherwise debootstrap (~1 min), and the tarball is cached for next time.
#
# Environment knobs (optional):
#   DEPLOYER_BASE_SUITE    Debian suite, default bookworm
#   DEPLOYER_BASE_MIRROR   mirror URL; default: the one apt on this host uses for SUITE
#   DEPLOYER_BASE_CACHE    default /var/cache/deployer/base
# stdout carries only the tag; logs go to stderr.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TAG=${1:-deployer-base/python:3.11-bookworm}
SUITE=${DEPLOYER_BASE_SUITE:-bookworm}
CACHE_DIR=${DEPLOYER_BASE_CACHE:-/var/cache/deployer/base}
PACKAGES=(python3 python3-venv python3-pip ca-certificates)
# Bump when the recipe below changes in a way the package list does not show.
RECIPE_VERSION=3


LOG_PREFIX=base-image
# shellcheck source=docker/lib.sh
source "$HERE/lib.sh"

# The engine: reuse the caller's, else bring ours up.
if ! timeout 15 docker info >/dev/null 2>&1; then
    eval "$(bash "$HERE/ensure-engine.sh")"
fi

# apt's own view of its sources (handles one-line .list and deb822 .sources
# files alike): "TARGET_OF IDENTIFIER RELEASE REPO_URI" per index target.
apt_targets() {
    # shellcheck disable=SC2016  # $(...) here is apt's format syntax, not the shell's
    apt-get indextargets --format '$(TARGET_OF) $(IDENTIFIER) $(RELEASE) $(REPO_URI)' 2>/dev/null || true
}

# URIs apt uses for a suite; plain "deb" Packages targets only.
apt_repo_uris() {
    apt_targets | awk -v s="$1" '$1 == "deb" && $2 == "Packages" && $3 == s { print $4 }' \
        | awk '!seen[$0]++'
}

pick_mirror() {
    local uri
    if [ -n "${DEPLOYER_BASE_MIRROR:-}" ]; then echo "$DEPLOYER_BASE_MIRROR"; return; fi
    uri=$(apt_repo_uris "$SUITE" | head -n 1)
    if [ -z "$uri" ]; then
        # Host on another suite: take the repository serving its main release
        # (not -updates/-security), which on a Debian host is the Debian mirror.
        uri=$(apt_targets \
            | awk '$1 == "deb" && $2 == "Packages" && $3 !~ /-/ { print $4; exit }')
    fi
    [ -n "$uri" ] || die "no Debian mirror found in apt's sources; set DEPLOYER_BASE_MIRROR=<mirror URL>"
    echo "${uri%/}"
}

# Strip user:password@ from a URL so no credential lands in the image.
strip_userinfo() { sed -E 's#^([a-z]+://)[^/@]*@#\1#' <<<"$1"; }

# `python` -> python3, as on python:slim. Decided by suite, not by the host's apt
# lists, so the recipe (and its cache key) is the same on every machine.
case $SUITE in
    jessie|stretch|buster) ;;
    *) PACKAGES+=(python-is-python3) ;;
esac
RECIPE=$(printf '%s\n' "v$RECIPE_VERSION" "$SUITE" "$(uname -m)" "${PACKAGES[@]}" | sha256sum | cut -c1-16)

image_recipe() {
    docker image inspect --format '{{ index .Config.Labels "deployer.base.recipe" }}' "$1" 2>/dev/null || true
}

if [ "$(image_recipe "$TAG")" = "$RECIPE" ]; then
    log "image $TAG exists (recipe $RECIPE)"
    echo "$TAG"
    exit 0
fi

[ "$(id -u)" -eq 0 ] || die "building $TAG needs root (debootstrap); run as root or provide the image"
mkdir -p "$CACHE_DIR"
# Concurrent test sessions may all ask for the base image at once.
exec 9>"$CACHE_DIR/.lock"
flock -w 900 9 || die "timed out waiting for $CACHE_DIR/.lock"
if [ "$(image_recipe "$TAG")" = "$RECIPE" ]; then
    log "image $TAG exists (built by a concurrent run)"
    echo "$TAG"
    exit 0
fi

TARBALL="$CACHE_DIR/$SUITE-$(uname -m)-$RECIPE.tar"
t0=$(date +%s)
if [ ! -s "$TARBALL" ]; then
    command -v debootstrap >/dev/null 2>&1 || apt_install debootstrap
    if [ ! -e /usr/share/keyrings/debian-archive-keyring.gpg ]; then
        apt_install debian-archive-keyring
    fi
    MIRROR=$(pick_mirror)
    WORK=$(mktemp -d "$CACHE_DIR/build.XXXXXX")
    # shellcheck disable=SC2064  # expand $WORK now, on purpose
    trap "rm -rf '$WORK'" EXIT
    ROOTFS="$WORK/rootfs"
    include=$(IFS=,; echo "${PACKAGES[*]}")
    log "debootstrap --variant=minbase $SUITE with $include from $(strip_userinfo "$MIRROR")"
    mkdir -p "$CACHE_DIR/debs"
    debootstrap --variant=minbase --components=main --include="$include" \
        --cache-dir="$CACHE_DIR/debs" "$SUITE" "$ROOTFS" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
        || { tail -n 30 "$WORK/debootstrap.log" >&2; die "debootstrap failed (log above)"; }
    t1=$(date +%s)
    log "debootstrap took $((t1 - t0))s"

    # apt inside the image uses the same mirror(s), minus any credentials; keep
    # -updates and -security when the host has them for this suite.
    {
        echo "deb $(strip_userinfo "$MIRROR") $SUITE main"
        apt_targets \
            | awk -v s="$SUITE" '$1 == "deb" && $2 == "Packages" && ($3 == s "-updates" || $3 == s "-security") { print $4, $3 }' \
            | awk '!seen[$0]++' \
            | while read -r uri rel; do echo "deb $(strip_userinfo "${uri%/}") $rel main"; done
    } >"$ROOTFS/etc/apt/sources.list"
    # Like Debian's slim images: later `apt-get install` in derived images skips docs too.
    mkdir -p "$ROOTFS/etc/dpkg/dpkg.cfg.d"
    cat >"$ROOTFS/etc/dpkg/dpkg.cfg.d/deployer-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
    cat >"$ROOTFS/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";
EOF
    # PEP 668: container images may drop the marker, so `pip install` works as on python:slim.
    rm -f "$ROOTFS"/usr/lib/python3*/EXTERNALLY-MANAGED
    # Slim it: apt lists/caches, docs (keeping copyright files), man pages, logs.
    rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/* \
        "$ROOTFS"/var/cache/debconf/*-old "$ROOTFS"/var/lib/dpkg/*-old \
        "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* \
        "$ROOTFS"/var/log/* "$ROOTFS"/tmp/* "$ROOTFS"/var/tmp/*
    find "$ROOTFS/usr/share/doc" -type f ! -name copyright -delete 2>/dev/null || true
    find "$ROOTFS/usr/share/doc" -depth -type d -empty -delete 2>/dev/null || true
    find "$ROOTFS/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} + 2>/dev/null || true
    mkdir -p "$ROOTFS/var/lib/apt/lists/partial" "$ROOTFS/var/cache/apt/archives/partial"
    # A fixed machine-id / hostname would be shared by every container; Docker sets these.
    : >"$ROOTFS/etc/machine-id"
    rm -f "$ROOTFS/etc/hostname"

    tar --numeric-owner -C "$ROOTFS" -cf "$TARBALL.partial" .
    mv "$TARBALL.partial" "$TARBALL"
    rm -rf "$WORK"
    trap - EXIT
    log "rootfs cached at $TARBALL ($(du -h "$TARBALL" | cut -f1))"
fi

t2=$(date +%s)
py=$(tar -tf "$TARBALL" | sed -n 's#^\./usr/bin/python\(3\.[0-9]*\)$#\1#p' | head -n 1)
docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change "LABEL deployer.base.recipe=$RECIPE deployer.base.suite=$SUITE deployer.base.python=${py:-unknown}" \
    --change 'CMD ["python3"]' \
    - "$TAG" <"$TARBALL" >/dev/null
t3=$(date +%s)
size=$(docker image inspect --format '{{.Size}}' "$TAG")
log "imported $TAG (python ${py:-?}, $((size / 1000000)) MB) in $((t3 - t2))s; total $((t3 - t0))s"
echo "$TAG"
