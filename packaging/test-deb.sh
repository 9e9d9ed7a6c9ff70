#!/usr/bin/env bash
# Builds the Debian package and checks it (docs/deploy.md, "One VM with the Debian package").
#
#   packaging/test-deb.sh             quick: build the .deb from the debug binary `cargo test`
#                                     builds, check its files against packaging/deb-contents.txt,
#                                     its conffiles and maintainer scripts, the shipped config with
#                                     `handoff check`, and the unit with `systemd-analyze verify`
#   packaging/test-deb.sh --install   also install it with dpkg into a throwaway Debian root
#                                     (debootstrap, cached by debian-root.sh) and run `handoff check`
#                                     there as the package's user, then remove and purge it
#
# A release package is `cargo deb` (a release build); this script packs the debug build instead
# (`--profile dev`, stripped), which CI has already built, to stay quick.
set -euo pipefail
cd "$(dirname "$0")/.."
. packaging/debian-root.sh
install=false
[ "${1:-}" = --install ] && install=true
out=$(mktemp -d)
root=""
cleanup() {
  [ -n "$root" ] && { umount "$root/proc" 2>/dev/null || true; }
  rm -rf "$out"
}
trap cleanup EXIT
fail() { echo "test-deb: $*" >&2; exit 1; }

command -v cargo-deb >/dev/null || cargo install --locked cargo-deb@3.8.0
cargo build --quiet --bin handoff
# cargo-deb warns that a dev profile is meant for releases; that is the point here.
cargo deb --no-build --profile dev --fast --quiet -o "$out/" > /dev/null 2> >(grep -v -e 'dev profile' -e 'debug symbols set' -e '^ *$' >&2 || true)
deb=$(echo "$out"/handoff_*.deb)
[ -f "$deb" ] || fail "no .deb was built"
echo "built $(basename "$deb") ($(stat -c %s "$deb") bytes)"

# Files: exactly the documented list.
dpkg-deb -c "$deb" | awk '{print $6}' | grep -v '/$' | sed 's|^\.||' | sort > "$out/contents"
diff -u packaging/deb-contents.txt "$out/contents" || fail "the package's files differ from packaging/deb-contents.txt"
[ "$(dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles)" = /etc/handoff/handoff.toml ] || fail "conffiles"
dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./postinst > "$out/postinst"
grep -q 'useradd --system' "$out/postinst" || fail "postinst does not create the handoff user"
grep -q 'deb-systemd-helper enable handoff.service' "$out/postinst" || fail "postinst does not enable handoff.service"
echo "contents, conffiles and maintainer scripts as documented"

# The shipped config passes `check`; the unit passes `systemd-analyze verify`, which prints a
# line for every key it does not know or value it cannot parse (its exit code stays 0 for those).
dpkg-deb -x "$deb" "$out/tree"
"$out/tree/usr/bin/handoff" --config "$out/tree/etc/handoff/handoff.toml" check > /dev/null
# verify checks that each command exists on this machine: point them at the unpacked binary.
sed "s|/usr/bin/handoff|$out/tree/usr/bin/handoff|g" "$out/tree/usr/lib/systemd/system/handoff.service" > "$out/handoff.service"
verified=$(systemd-analyze verify "$out/handoff.service" 2>&1) || fail "systemd-analyze verify: $verified"
[ -z "$verified" ] || fail "systemd-analyze verify: $verified"
echo "the shipped /etc/handoff/handoff.toml passes handoff check; systemd-analyze verify passes on handoff.service"

$install || exit 0

# A throwaway Debian: install, check as the service's user, remove, purge.
ensure_root_tarball
root="$out/root"
mkdir "$root"
tar -C "$root" -xf "$root_tarball"
chmod 755 "$root"   # the service's user must be able to reach /usr/bin
mount -t proc proc "$root/proc"
cp "$deb" "$root/tmp/handoff.deb"
chroot "$root" dpkg -i /tmp/handoff.deb > "$out/dpkg.log" 2>&1 || { cat "$out/dpkg.log" >&2; fail "dpkg -i failed"; }
account=$(chroot "$root" getent passwd handoff) || fail "no handoff user after install"
case "$account" in
  *:/var/lib/handoff:/usr/sbin/nologin) ;;
  *) fail "the handoff user is $account" ;;
esac
[ -L "$root/etc/systemd/system/multi-user.target.wants/handoff.service" ] || fail "handoff.service is not enabled"
chroot "$root" runuser -u handoff -- handoff --config /etc/handoff/handoff.toml check > "$out/check.log" \
  || { cat "$out/check.log" >&2; fail "handoff check failed in the installed root"; }
echo "installed into a Debian bookworm root: user handoff, handoff.service enabled, handoff check passes as user handoff"
echo "# local edit" >> "$root/etc/handoff/handoff.toml"
chroot "$root" dpkg -r handoff > /dev/null
grep -q '# local edit' "$root/etc/handoff/handoff.toml" || fail "remove lost the edited conffile"
chroot "$root" dpkg -P handoff > /dev/null
[ ! -e "$root/etc/handoff/handoff.toml" ] || fail "purge left /etc/handoff/handoff.toml"
echo "remove kept the edited config; purge removed it"
