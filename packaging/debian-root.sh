# Sourced by test-deb.sh and test-container.sh: a minimal Debian bookworm root made by
# debootstrap, kept as a tarball in the cache directory so that only the first run downloads
# (about 4 minutes; later runs unpack it in seconds).
cache_dir=${HANDOFF_CI_CACHE:-/var/cache/handoff-ci}
# v2: the root directory itself is 0755 (mktemp makes it 0700, and tar keeps that for ".",
# which left / untraversable for the unprivileged users the tests run as).
root_tarball=$cache_dir/bookworm-minbase.v2.tar

ensure_root_tarball() {
  [ -s "$root_tarball" ] && return
  command -v debootstrap >/dev/null || {
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap
  }
  mkdir -p "$cache_dir"
  local tmp
  tmp=$(mktemp -d "$cache_dir/root.XXXXXX")
  chmod 755 "$tmp"
  debootstrap --variant=minbase --include=ca-certificates bookworm "$tmp" http://deb.debian.org/debian >&2
  tar -C "$tmp" -cf "$root_tarball.part" .
  mv "$root_tarball.part" "$root_tarball"
  rm -rf "$tmp" "$cache_dir/bookworm-minbase.tar"
}
