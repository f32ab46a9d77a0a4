#!/usr/bin/env bash
# Install everything migfw needs on Debian 12. Safe to run again: it only adds what is missing.
#   bash scripts/install.sh                  everything: testbed (QEMU, libvirt, nftables…) + analysis
#   bash scripts/install.sh --analysis-only  only what analysis-only reruns need (no root needed
#                                            if python3-venv is already there)
#   bash scripts/install.sh --test           everything plus the test and lint tools
# Python packages go into .venv/ beside this repository; activate it with `. .venv/bin/activate`.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=full
for arg in "$@"; do
  case "$arg" in
    --analysis-only) mode=analysis ;;
    --test) mode=test ;;
    *) echo "install.sh: unknown option $arg (use --analysis-only or --test)" >&2; exit 2 ;;
  esac
done

python=${PYTHON:-python3}
if [ "$mode" = analysis ]; then
  # Analysis needs only a Python that can make a venv (wheels cover the rest): no root.
  apt_packages=()
  "$python" -c "import ensurepip, venv" >/dev/null 2>&1 || apt_packages+=(python3 python3-venv)
else
  apt_packages=(python3 python3-venv python3-dev gcc pkg-config git)
  apt_packages+=(
    qemu-system-x86 qemu-utils libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients
    libvirt-dev nftables tcpdump iproute2 kmod cpio zstd xz-utils busybox-static
    dropbear-bin openssh-sftp-server openssh-client procps psmisc
    openssh-server netcat-openbsd  # the lab in a box: sshd per host namespace, nc for libvirt
  )
fi
if [ "$mode" = test ]; then
  apt_packages+=(tshark chromium iputils-ping)
fi

missing=()
for pkg in "${apt_packages[@]+"${apt_packages[@]}"}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
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
  # libvirt's QEMU driver wants this user and group to exist even when it runs guests as root.
  getent group libvirt-qemu >/dev/null || groupadd --system libvirt-qemu
  getent passwd libvirt-qemu >/dev/null || useradd --system -g libvirt-qemu -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu
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
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".${extras}"
echo "install.sh: done ($mode). Activate with: . .venv/bin/activate"
