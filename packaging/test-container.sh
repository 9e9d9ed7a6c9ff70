#!/usr/bin/env bash
# Builds packaging/container/Dockerfile and runs the image, on a machine that cannot pull from
# public registries: both bases are a Debian root made by debootstrap (debian-root.sh), and the
# builder stage gets a binary built outside (`cargo build`) instead of a Rust toolchain.
#
#   packaging/test-container.sh [HANDOFF_BINARY]    (default: the debug build under the target dir)
#
# Checks: the image builds; its metadata (user, volume, stop signal, health check, port,
# entrypoint); it serves /healthz and its HEALTHCHECK command succeeds; SIGTERM stops it cleanly.
# The run uses `podman run` where the container runtime works; where it cannot start containers
# (a sandbox that refuses setrlimit or has hybrid cgroups), it runs the image's own root file
# system with chroot as the image's user and entrypoint instead, and says so.
set -euo pipefail
cd "$(dirname "$0")/.."
. packaging/debian-root.sh
binary=${1:-${CARGO_TARGET_DIR:-target}/debug/handoff}
work=$(mktemp -d)
container=""
server=""
mnt=""
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null || true
  [ -n "$mnt" ] && { umount "$mnt/proc" 2>/dev/null || true; }
  [ -n "$container" ] && { buildah umount "$container" >/dev/null 2>&1 || true; buildah rm "$container" >/dev/null 2>&1 || true; }
  rm -rf "$work"
}
trap cleanup EXIT

ensure_root_tarball
if ! podman image exists localhost/handoff-ci-base:bookworm; then
  podman import -q "$root_tarball" localhost/handoff-ci-base:bookworm >/dev/null
fi
# The previous run's images, so that reruns leave no untagged ones behind.
podman rmi -f localhost/handoff:test localhost/handoff-ci-prebuilt:latest >/dev/null 2>&1 || true
# The builder stand-in: the base plus the prebuilt binary where the Dockerfile expects it.
strip -o "$work/handoff" "$binary"
builder=$(buildah from -q localhost/handoff-ci-base:bookworm)
buildah copy -q --chmod 0755 "$builder" "$work/handoff" /usr/local/bin/handoff >/dev/null
buildah commit -q --rm "$builder" localhost/handoff-ci-prebuilt:latest >/dev/null

# The Dockerfile as it is, bases swapped by its build arguments.
buildah bud -q --isolation chroot --format docker --layers=false \
  --build-arg RUST_IMAGE=localhost/handoff-ci-prebuilt:latest \
  --build-arg RUNTIME_IMAGE=localhost/handoff-ci-base:bookworm \
  -f packaging/container/Dockerfile -t localhost/handoff:test . >/dev/null
echo "image built: localhost/handoff:test ($(podman image inspect -f '{{.Size}}' localhost/handoff:test) bytes)"

# Metadata: what the Dockerfile promises.
inspect() { podman image inspect -f "$1" localhost/handoff:test; }
expect() {
  local got
  got=$(inspect "$1")
  [ "$got" = "$2" ] || { echo "image $1: expected $2, got $got" >&2; exit 1; }
}
expect '{{.Config.User}}' '10001:10001'
expect '{{range $k, $v := .Config.Volumes}}{{$k}}{{end}}' '/var/lib/handoff'
expect '{{.Config.StopSignal}}' 'SIGTERM'
expect '{{range $k, $v := .Config.ExposedPorts}}{{$k}}{{end}}' '8080/tcp'
expect '{{.Config.Entrypoint}}' '[handoff]'
expect '{{.Config.Cmd}}' '[serve]'
expect '{{.HealthCheck.Test}}' '[CMD handoff health]'
echo "metadata ok: user 10001, volume /var/lib/handoff, STOPSIGNAL SIGTERM, HEALTHCHECK handoff health, port 8080"

# Run it. The port is free on this host, whatever else runs here.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
printf '[server]\nlisten = "127.0.0.1:%s"\n\n[store]\nurl = "sqlite:///var/lib/handoff/handoff.db"\n' "$port" > "$work/handoff.toml"
chmod 0644 "$work/handoff.toml"
wait_for_healthz() {
  for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "the container did not answer /healthz on port $port" >&2
  return 1
}
if podman run --rm --network host localhost/handoff-ci-base:bookworm true >/dev/null 2>&1; then
  name=handoff-test-$$
  podman run -d --name "$name" --network host -v "$work/handoff.toml:/etc/handoff/handoff.toml:ro" localhost/handoff:test >/dev/null
  wait_for_healthz
  podman exec "$name" handoff health "http://127.0.0.1:$port/readyz"
  podman stop -t 60 "$name" >/dev/null
  code=$(podman inspect -f '{{.State.ExitCode}}' "$name")
  podman rm "$name" >/dev/null
  [ "$code" = 0 ] || { echo "the container exited $code on SIGTERM" >&2; exit 1; }
  echo "podman run: /healthz answered, the HEALTHCHECK command passed, SIGTERM stopped it (exit 0)"
else
  echo "podman cannot start containers here; running the image's root file system with chroot instead"
  container=$(buildah from -q localhost/handoff:test)
  mnt=$(buildah mount "$container")
  cp "$work/handoff.toml" "$mnt/etc/handoff/handoff.toml"
  mount -t proc proc "$mnt/proc"
  # The image's entrypoint and command, as its user, in its working directory, with its env.
  chroot --userspec=10001:10001 "$mnt" /usr/bin/env -i HANDOFF_CONFIG=/etc/handoff/handoff.toml \
    sh -c 'cd /var/lib/handoff && exec handoff serve' > "$work/serve.log" 2>&1 &
  server=$!
  wait_for_healthz || { cat "$work/serve.log" >&2; exit 1; }
  chroot --userspec=10001:10001 "$mnt" handoff health "http://127.0.0.1:$port/readyz"
  [ "$(stat -c %u "$mnt/var/lib/handoff/handoff.db")" = 10001 ] || { echo "the store is not the image user's" >&2; exit 1; }
  kill -TERM "$server"
  wait "$server" && code=0 || code=$?
  server=""
  [ "$code" = 0 ] || { cat "$work/serve.log" >&2; echo "handoff exited $code on SIGTERM" >&2; exit 1; }
  echo "chroot run: /healthz answered, the HEALTHCHECK command passed, the store was created as user 10001, SIGTERM stopped it (exit 0)"
fi
