#!/usr/bin/env bash
# Runs a command inside an older or foreign Linux userland, made with debootstrap from Debian's
# packages the first time and kept (in $JAXGRU_USERLANDS, default /var/cache/jaxgru) for later
# runs on the same machine. Needs root (debootstrap, chroot, mounts in a private namespace).
#
#   bash scripts/userland.sh NAME [DIR] -- COMMAND...
#   bash scripts/userland.sh --tools     (installs what making both needs, and nothing else: run it
#                                         first where the two are made at once, apt being one at a time)
#
# NAME:
#   bullseye-amd64  Debian 11: glibc 2.31, gcc 10.2, binutils 2.35.2 (the oldest toolchain and C
#                   library jaxgru's release is built with and tested on), the aarch64
#                   cross-compiler of the same release, and Python 3.11.2 built from Debian's own
#                   source package (Debian 11 has only 3.9) into /opt/python3.11.
#   bookworm-arm64  Debian 12 for aarch64, run under qemu-user-static (binfmt_misc), with Debian's
#                   Python 3.11.
# DIR, if given, is bind-mounted at /work inside. COMMAND runs as root with a plain environment
# (PATH starting at the userland's Python 3.11) and pip pointed at this machine's certificates.
set -euo pipefail
cd "$(dirname "$0")/.."

name=${1:?usage: userland.sh NAME [DIR] -- COMMAND...}
shift
bind=
if [ "$name" != --tools ]; then
  if [ "${1:-}" != "--" ]; then
    bind=$(cd "${1:?usage: userland.sh NAME [DIR] -- COMMAND...}" && pwd)
    shift
  fi
  [ "${1:-}" = "--" ] || { echo "usage: userland.sh NAME [DIR] -- COMMAND..." >&2; exit 2; }
  shift
fi

# The recipe's version: a userland made by an older recipe is made anew.
recipe=1
cache=${JAXGRU_USERLANDS:-/var/cache/jaxgru}
root=$cache/$name
mirror=http://deb.debian.org/debian

need() {  # need COMMAND PACKAGE...: installs Debian's PACKAGEs where COMMAND is missing
  local command=$1
  shift
  command -v "$command" >/dev/null && return
  [ -n "${apt_updated:-}" ] || { apt-get update -qq; apt_updated=1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

emulate_arm64() {  # qemu for aarch64 binaries, registered with the kernel's binfmt_misc
  need qemu-aarch64-static qemu-user-static binfmt-support
  [ -e /proc/sys/fs/binfmt_misc/status ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64
}

# enter [COMMAND...]: COMMAND in the userland, with /proc, /dev, /sys and DIR mounted in a mount
# namespace of its own (the mounts go away with it, however it ends)
enter() {
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/host-certificates.crt"
  mkdir -p "$root/work"
  unshare --mount --propagation private -- bash -c '
    root=$1 bind=$2 emulated=$3
    shift 3
    mount -t proc proc "$root/proc"
    mount --rbind /dev "$root/dev"
    mount --rbind /sys "$root/sys"
    [ -z "$bind" ] || mount --bind "$bind" "$root/work"
    exec chroot "$root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb \
      PATH=/opt/python3.11/bin:/usr/local/bin:/usr/bin:/bin PIP_CERT=/etc/host-certificates.crt \
      PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore $emulated "$@"
  ' enter "$root" "$bind" "$emulated" "$@"
}

make_bullseye_amd64() {
  debootstrap --variant=minbase \
    --include=build-essential,g++-aarch64-linux-gnu,binutils-aarch64-linux-gnu,ca-certificates,xz-utils,dpkg-dev,zlib1g-dev,libssl-dev,libffi-dev,libbz2-dev,liblzma-dev,libsqlite3-dev,uuid-dev \
    bullseye "$root" "$mirror"
  echo "deb-src $mirror bookworm main" >"$root/etc/apt/sources.list.d/bookworm-src.list"
  # Python 3.11.2, Debian 12's upstream source (the orig tarball), built without Debian's patches
  enter bash -c 'set -e
    apt-get update -qq
    mkdir -p /src && cd /src
    apt-get source --download-only python3.11 >/dev/null 2>&1
    tar xzf python3.11_*.orig.tar.gz && cd Python-3.11*/
    ./configure --prefix=/opt/python3.11 >/src/configure.log 2>&1
    make -j"$(nproc)" >/src/make.log 2>&1
    make install >/src/install.log 2>&1
    cd / && rm -rf /src
    /opt/python3.11/bin/python3.11 -m pip install --quiet --upgrade pip
    ln -sf python3.11 /opt/python3.11/bin/python'
}

make_bookworm_arm64() {
  emulate_arm64
  debootstrap --arch=arm64 --variant=minbase --include=python3.11,python3.11-venv,python3-pip,ca-certificates \
    bookworm "$root" "$mirror"
  mkdir -p "$root/opt/python3.11/bin"
  ln -sf /usr/bin/python3.11 "$root/opt/python3.11/bin/python3.11"
  ln -sf /usr/bin/python3.11 "$root/opt/python3.11/bin/python"
}

if [ "$name" = --tools ]; then
  need debootstrap debootstrap
  emulate_arm64
  exit 0
fi

# Under emulation, the CPU is a Neoverse N1 (AWS Graviton 2, Ampere Altra): qemu's default "max"
# CPU claims SME, and OpenBLAS then takes its SME kernels, whose products qemu 7.2 gets wrong.
emulated=
case $name in
  bullseye-amd64) ;;
  bookworm-arm64) emulate_arm64 && emulated=QEMU_CPU=neoverse-n1 ;;
  *) echo "userland.sh: no userland named $name (bullseye-amd64, bookworm-arm64)" >&2; exit 2 ;;
esac
if [ "$(cat "$root/.jaxgru-userland" 2>/dev/null)" != "$recipe" ]; then
  echo "userland.sh: making $name in $root (once; a few minutes)" >&2
  need debootstrap debootstrap
  rm -rf "$root"
  mkdir -p "$cache"
  log=$cache/$name.log
  "make_${name//-/_}" >"$log" 2>&1 || { tail -30 "$log" >&2; echo "userland.sh: making $name failed (log: $log)" >&2; exit 1; }
  echo "$recipe" >"$root/.jaxgru-userland"
fi
enter "$@"
