#!/usr/bin/env bash
# Install everything migfw needs on Debian 12. Safe to run again: it only adds what is missing.
#   bash scripts/install.sh                  everything: testbed (QEMU, libvirt, nftables…) + analysis
#   bash scripts/install.sh --analysis-only  only what analysis-only reruns need (no root needed
#                                            if python3-venv is already there)
#   bash scripts/install.sh --test           everything plus the test and lint tools
#   (testbed modes)                          also QEMU 10 from Debian backports into .qemu-backports/,
#                                            the default emulator (scripts/install-qemu-backports.sh;
#                                            Debian 12's QEMU 7.2 loses guest memory in TCG migrations)
#   add --system-qemu                        skip it: the trials then need testbed.guest.emulator: system
#   add --resolve                            resolve pyproject.toml's ranges afresh instead of
#                                            installing the locked set (requirements/<mode>.txt)
#   add --spark                              also Splink's Spark backend: a Java runtime (apt) and
#                                            pyspark (requirements/spark.txt; ~430 MB, opt-in:
#                                            docs/slr_dedupe.md, "Scale and Spark")
# Python packages go into .venv/ beside this repository; activate it with `. .venv/bin/activate`.
# By default they are exactly the versions and files (sha256) in requirements/<mode>.txt
# (regenerate with scripts/lock.sh); what was installed is recorded in .venv/migfw-install.json
# for the run's report (migfw run-info).
set -euo pipefail
cd "$(dirname "$0")/.."

mode=full
resolve=no
qemu_backports=yes
spark=no
for arg in "$@"; do
  case "$arg" in
    --analysis-only) mode=analysis ;;
    --test) mode=test ;;
    --resolve) resolve=yes ;;
    --qemu-backports) qemu_backports=yes ;;  # the default since issue 22; kept for old commands
    --system-qemu) qemu_backports=no ;;
    --spark) spark=yes ;;
    *) echo "install.sh: unknown option $arg (use --analysis-only, --test, --resolve, --system-qemu, --spark)" >&2; exit 2 ;;
  esac
done

python=${PYTHON:-python3}
if [ "$mode" = analysis ]; then
  # Analysis needs only a Python that can make a venv (wheels cover the rest): no root.
  apt_packages=()
  "$python" -c "import ensurepip, venv" >/dev/null 2>&1 || apt_packages+=(python3 python3-venv)
else
  # chromium: `migfw report-check` opens the HTML report in it (README, "Report and archive").
  apt_packages=(python3 python3-venv python3-dev gcc libc6-dev pkg-config git chromium)
  apt_packages+=(
    qemu-system-x86 qemu-utils libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients
    libvirt-dev nftables tcpdump iproute2 kmod cpio zstd xz-utils busybox-static
    dropbear-bin openssh-sftp-server openssh-client procps psmisc
    iptables ebtables  # libvirt nwfilter (placement vmm): the nft-backed binaries
    openssh-server netcat-openbsd  # the lab in a box: sshd per host namespace, nc for libvirt
    # placement ovn: OVS (userspace datapath) + OVN per host namespace, conntrack, ethtool
    openvswitch-switch ovn-central ovn-host conntrack ethtool
  )
fi
if [ "$mode" = test ]; then
  apt_packages+=(tshark iputils-ping)
  # The one-node Slurm of tests/test_slurm.py and CI (scripts/slurm-local.sh): Debian's
  # Slurm 22.05 with its accounting daemon and database, so `sacct` answers the executor.
  apt_packages+=(slurm-wlm slurmdbd munge mariadb-server mariadb-client)
fi
# Splink's Spark backend runs its queries in a JVM (Spark 4 needs Java 17 or newer).
if [ "$spark" = yes ]; then apt_packages+=(openjdk-17-jre-headless); fi

missing=()
for pkg in "${apt_packages[@]+"${apt_packages[@]}"}"; do
  [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" = "install ok installed" ] || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: these Debian packages are missing and installing them needs root: ${missing[*]}" >&2
    exit 1
  fi
  echo "install.sh: apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if [ "$mode" != analysis ] && [ "$(id -u)" -eq 0 ]; then
  # nwfilter drives iptables/ebtables; this kernel has no legacy x_tables, only nftables.
  for alt in iptables ip6tables ebtables; do
    if [ -x "/usr/sbin/$alt-nft" ]; then update-alternatives --set "$alt" "/usr/sbin/$alt-nft" >/dev/null; fi
  done
  # libvirt's QEMU driver wants this user and group to exist even when it runs guests as root.
  getent group libvirt-qemu >/dev/null || groupadd --system libvirt-qemu
  getent passwd libvirt-qemu >/dev/null || useradd --system -g libvirt-qemu -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu
fi

if [ "$qemu_backports" = yes ] && [ "$mode" != analysis ]; then
  if [ "$(id -u)" -eq 0 ]; then
    bash scripts/install-qemu-backports.sh
  elif [ ! -x .qemu-backports/qemu-system-x86_64 ]; then
    echo "install.sh: QEMU 10 (the default emulator) is installed as root; run this as root," \
      "or use --system-qemu and testbed.guest.emulator: system" >&2
  fi
fi

# The python3 first on PATH (it may be newer than Debian's) makes the venv.
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
extras=""
case "$mode" in
  full) extras="[testbed]" ;;
  test) extras="[testbed,dev]" ;;
esac
lock="requirements/$mode.txt"
if [ "$resolve" = yes ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".${extras}"
  lock=""
else
  # The locked set: every package pinned and hash-checked; then migfw itself without deps.
  .venv/bin/python -m pip install -q --require-hashes -r "$lock"
  .venv/bin/python -m pip install -q --no-deps -e .
fi
if [ "$spark" = yes ]; then
  .venv/bin/python -m pip install -q --require-hashes -r requirements/spark.txt
fi
# Compile the capture reader's numba kernels now, into the package's cache, so the first
# analysis does not spend seconds compiling (migfw.measure.capture picks the cache folder),
# and build the ahead-of-time module from them that every analysis job then runs without
# importing numba (migfw.measure.capture.aot; skipped with a note if it cannot be built).
.venv/bin/python -m migfw.measure.warm
lock_sha=""
[ -n "$lock" ] && lock_sha=$(sha256sum "$lock" | cut -d' ' -f1)
cat >.venv/migfw-install.json <<JSON
{"mode": "$mode", "lock": "$lock", "lock_sha256": "$lock_sha", "resolved": $([ "$resolve" = yes ] && echo true || echo false)}
JSON
echo "install.sh: done ($mode, ${lock:-resolved afresh}). Activate with: . .venv/bin/activate"
