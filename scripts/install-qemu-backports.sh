#!/usr/bin/env bash
# QEMU from Debian bookworm-backports, the default emulator (testbed.guest.emulator), beside the
# repository in .qemu-backports/, without touching the system's QEMU or apt sources:
#   bash scripts/install-qemu-backports.sh      (bash scripts/install.sh runs it; --system-qemu skips)
# Why: Debian 12's QEMU 7.2 loses guest memory writes when it live-migrates a TCG guest (the
# dirty-bitmap fast path does not re-arm the TCG TLB; fixed upstream in QEMU 9.0 by
# 03bfc2188f "physmem: Fix migration dirty bitmap coherency with TCG memory access"), which
# crashes guests after long, capped migrations (docs/testbed.md, "Known problem").
# The packages come from a private apt list of bookworm-backports (apt-get download) and are
# unpacked with dpkg -x; .qemu-backports/qemu-system-x86_64 is a wrapper that points QEMU at
# its own modules (the system's 7.2 modules would abort it). libvirt runs it through
# testbed.guest.emulator. Safe to run again: it only re-downloads when the version changed.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=.qemu-backports
suite=${QEMU_BACKPORTS_SUITE:-bookworm-backports}
# The mirror this machine's own apt sources use for the suite's release (a site's local
# mirror, a snapshot), deb.debian.org only when none names it.
machine_mirror=$(apt-get indextargets --format '$(RELEASE) $(REPO_URI)' 'Identifier: Packages' \
  2>/dev/null | awk -v rel="${suite%-backports}" '$1 == rel && !m {m = $2} END {print m}')
mirror=${QEMU_BACKPORTS_MIRROR:-${machine_mirror:-http://deb.debian.org/debian}}
mirror=${mirror%/}
packages=(qemu-system-x86 qemu-system-common qemu-system-data qemu-system-gui
          qemu-system-modules-opengl qemu-system-modules-spice)
mkdir -p "$dest/apt/lists/partial" "$dest/apt/archives/partial" "$dest/debs"
echo "deb $mirror $suite main" >"$dest/apt/sources.list"
apt_opts=(-o "Dir::Etc::sourcelist=$PWD/$dest/apt/sources.list" -o "Dir::Etc::sourceparts=-"
          -o "Dir::State::Lists=$PWD/$dest/apt/lists" -o "Dir::Cache::archives=$PWD/$dest/apt/archives"
          -o "APT::Sandbox::User=root")
apt-get "${apt_opts[@]}" -q update >/dev/null
# awk reads to the end: leaving early would SIGPIPE apt-cache, which pipefail turns into exit 141.
version=$(apt-cache "${apt_opts[@]}" show qemu-system-x86 | awk '/^Version:/ && !v {v = $2} END {print v}')
if [ -z "$version" ]; then
  echo "install-qemu-backports.sh: no qemu-system-x86 in $suite ($mirror)" >&2
  exit 1
fi
if [ "$(cat "$dest/version" 2>/dev/null)" != "$version" ] || [ ! -x "$dest/root/usr/bin/qemu-system-x86_64" ]; then
  rm -rf "$dest/root" "$dest/debs"/*.deb
  (cd "$dest/debs" && apt-get "${apt_opts[@]}" -q download "${packages[@]/%/=$version}" >/dev/null)
  for deb in "$dest/debs"/*.deb; do dpkg -x "$deb" "$dest/root"; done
  echo "$version" >"$dest/version"
fi
root="$PWD/$dest/root"
cat >"$dest/qemu-system-x86_64" <<WRAP
#!/bin/sh
# QEMU $version from $suite (scripts/install-qemu-backports.sh); its own modules only.
export QEMU_MODULE_DIR="$root/usr/lib/x86_64-linux-gnu/qemu"
exec "$root/usr/bin/qemu-system-x86_64" "\$@"
WRAP
chmod 755 "$dest/qemu-system-x86_64"
missing=$(ldd "$root/usr/bin/qemu-system-x86_64" | awk '/not found/ {print $1}')
if [ -n "$missing" ]; then
  echo "install-qemu-backports.sh: QEMU $version needs libraries this machine lacks: $missing" >&2
  exit 1
fi
echo "install-qemu-backports.sh: $("$dest/qemu-system-x86_64" --version | sed -n 1p) in $dest/"
