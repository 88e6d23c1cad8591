#!/usr/bin/env bash
# Makes the base images docker/Dockerfile starts FROM, for hosts with no registry to pull from:
# debian:12 and debian:12-slim, both from one `debootstrap --variant=minbase bookworm` of the
# Debian mirror apt already uses, imported with podman. Does nothing for a tag that exists.
# The slim one is trimmed as Debian's official slim image is (no docs, man pages or locales,
# now or in later installs) so that the runtime image stays small.
# Usage: docker/base-images.sh [--force]   (root; run `. docker/podman-env` first where needed)
set -euo pipefail

force=0
[[ "${1:-}" == "--force" ]] && force=1
pod() { podman --storage-driver vfs "$@"; }

want=()
for tag in debian:12 debian:12-slim; do
  if [[ $force -eq 1 ]] || ! pod image exists "docker.io/library/$tag"; then want+=("$tag"); fi
done
[[ ${#want[@]} -eq 0 ]] && exit 0

sources=/etc/apt/sources.list.d/debian.sources
mirror=$(awk '/^URIs:/ {print $2; exit}' "$sources" 2>/dev/null || true)
mirror=${mirror:-http://deb.debian.org/debian}
rootfs=$(mktemp -d /tmp/sluice-rootfs.XXXXXX)
chmod 755 "$rootfs"  # it becomes the image's /: mktemp's 0700 would lock every user but root out
trap 'rm -rf "$rootfs"' EXIT
echo "base-images: debootstrap bookworm from $mirror (about a minute)" >&2
if ! debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1; then
  tail -20 "$rootfs.log" >&2
  rm -f "$rootfs.log"
  exit 1
fi
rm -f "$rootfs.log"

# Both images: the host's apt sources (bookworm, -updates and -security, as the official images
# have), no package lists or caches (every Dockerfile runs apt-get update), no machine id.
if [[ -f "$sources" ]]; then
  cp "$sources" "$rootfs/etc/apt/sources.list.d/debian.sources"
  rm -f "$rootfs/etc/apt/sources.list"
fi
cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb
: >"$rootfs/etc/machine-id"

import() {
  echo "base-images: importing docker.io/library/$1" >&2
  # The image config Debian's official images have: PATH and a shell as the default command.
  tar -C "$rootfs" --numeric-owner -c . |
    pod import -q --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'CMD ["bash"]' - "docker.io/library/$1" >/dev/null
}
[[ " ${want[*]} " == *" debian:12 "* ]] && import debian:12

cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
# As in Debian's official slim images: no documentation, man pages or translations.
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
EOF
find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
rm -rf "$rootfs"/usr/share/{man,groff,info,lintian,linda,locale}/*
[[ " ${want[*]} " == *" debian:12-slim "* ]] && import debian:12-slim
exit 0
