#!/usr/bin/env bash
# End-to-end test of the containerd shim, offline: a private containerd (own
# config, root, state and sockets in a temporary folder; a system containerd
# is never touched), images built from the guests in modules/, and
# `ctr run --runtime <the shim>` for each behaviour the shim promises.
# Prints `N passed, N failed` last; exits non-zero on any failure, and when
# it cannot test at all (not root, containerd does not start).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

die() { echo "e2e: $*" >&2; echo "0 passed, 1 failed"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root: containerd and the shim create namespaces and cgroups (run with sudo)"

# -- tools, installed only when missing (CI starts from a clean machine) ------
need=()
command -v containerd >/dev/null || need+=(containerd)
command -v ctr >/dev/null || need+=(containerd)
command -v runc >/dev/null || need+=(runc)
command -v protoc >/dev/null || need+=(protobuf-compiler)
dpkg -s libseccomp-dev >/dev/null 2>&1 || need+=(libseccomp-dev)
if [ ${#need[@]} -gt 0 ]; then
  echo "e2e: installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# -- build: the shim (debug profile: it shares compiled dependencies with the
# test build) and the guests -------------------------------------------------
target=${CARGO_TARGET_DIR:-$repo/target}
# The escape drill's shim first, copied away: the plain shim is built last, so
# target/ never keeps a shim with the drill in it.
drill_dir=$(mktemp -d /tmp/wasmcell-e2e-drill.XXXXXX)
cargo build --quiet -p containerd-shim-wasmcell --features wall-drill
cp "$target/debug/containerd-shim-wasmcell-v1" "$drill_dir/containerd-shim-wasmcell-v1"
cargo build --quiet -p containerd-shim-wasmcell
cargo test --quiet -p containerd-shim-wasmcell   # the shim's own unit tests
cargo build --quiet --release -p wasmcell-modules --target wasm32-wasip1
# WASI 0.2 sockets are where the policy's network refusals are recorded.
cargo build --quiet --release -p wasmcell-modules --target wasm32-wasip2 --bin net_tcp_connect
shim="$target/debug/containerd-shim-wasmcell-v1"
guests="$target/wasm32-wasip1/release"
[ -x "$shim" ] || die "the shim was not built at \`$shim\`"

# -- a private containerd ------------------------------------------------------
tmp=$(mktemp -d /tmp/wasmcell-e2e.XXXXXX)
ns="wasmcell-e2e-$$"
sock="$tmp/containerd.sock"
containerd_pid=""
bg_pids=()

cleanup() {
  set +e
  for pid in "${bg_pids[@]}"; do kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
  if [ -n "$containerd_pid" ]; then
    for id in $(ctr --address "$sock" -n "$ns" task ls -q 2>/dev/null); do
      ctr --address "$sock" -n "$ns" task kill -s SIGKILL "$id" >/dev/null 2>&1
      ctr --address "$sock" -n "$ns" task delete -f "$id" >/dev/null 2>&1
    done
    for id in $(ctr --address "$sock" -n "$ns" containers ls -q 2>/dev/null); do
      ctr --address "$sock" -n "$ns" containers delete "$id" >/dev/null 2>&1
    done
  fi
  # Shims outlive containerd by design; ours are the ones given our socket.
  for cmdline in /proc/[0-9]*/cmdline; do
    pid=${cmdline#/proc/}; pid=${pid%/cmdline}
    if { tr '\0' ' ' <"$cmdline"; } 2>/dev/null | grep -qF -- "-address $sock"; then
      kill "$pid" 2>/dev/null
    fi
  done
  if [ -n "$containerd_pid" ]; then
    kill "$containerd_pid" 2>/dev/null
    wait "$containerd_pid" 2>/dev/null
  fi
  # Snapshots and rootfs mounts that a killed run may have left.
  grep -F " $tmp/" /proc/self/mountinfo | awk '{print $5}' | sort -r | while read -r m; do umount -l "$m"; done
  rm -rf "$tmp" "$drill_dir"
  rmdir "/run/containerd/wasmcell/$ns" 2>/dev/null
}
trap cleanup EXIT

mkdir -p "$tmp/policies"
cat >"$tmp/config.toml" <<TOML
version = 2
root = "$tmp/root"
state = "$tmp/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$sock"
[ttrpc]
  address = "$tmp/containerd-ttrpc.sock"
[debug]
  address = "$tmp/debug.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "$tmp/opt"
TOML
# The shim inherits containerd's environment: the node policies live here.
WASMCELL_POLICY_DIR="$tmp/policies" containerd --config "$tmp/config.toml" >"$tmp/containerd.log" 2>&1 &
containerd_pid=$!
for _ in $(seq 100); do
  ctr --address "$sock" version >/dev/null 2>&1 && break
  kill -0 "$containerd_pid" 2>/dev/null || break
  sleep 0.2
done
if ! ctr --address "$sock" version >/dev/null 2>&1; then
  tail -20 "$tmp/containerd.log" >&2
  die "the private containerd did not start (its log is above)"
fi
ctr_() { ctr --address "$sock" -n "$ns" "$@"; }

# -- images ---------------------------------------------------------------------
modules=(hello exit_code env_vars fs_read limits_memory_bomb limits_sleep_forever drill_attempt)
wasm=()
for m in "${modules[@]}"; do wasm+=("$guests/$m.wasm"); done
mkdir -p "$tmp/p2" && cp "$target/wasm32-wasip2/release/net_tcp_connect.wasm" "$tmp/p2/net_tcp_connect_p2.wasm"
wasm+=("$tmp/p2/net_tcp_connect_p2.wasm")
cat >"$tmp/image-policy.toml" <<'TOML'
# The image's own policy: long runs (the kill test), one inherited variable,
# and no network: the denial tests rely on it (with no TCP use granted, the
# guest cannot even create a socket: a `tcp-socket` denial).
[limits]
timeout = "1h"
[env]
inherit = ["GREETING"]
TOML
shim/build-image.sh --name localhost/wasmcell-e2e:with-policy --out "$tmp/with-policy.tar" --policy "$tmp/image-policy.toml" "${wasm[@]}"
shim/build-image.sh --name localhost/wasmcell-e2e:no-policy --out "$tmp/no-policy.tar" "${wasm[@]}"
ctr_ image import "$tmp/with-policy.tar" >/dev/null
ctr_ image import "$tmp/no-policy.tar" >/dev/null
img=localhost/wasmcell-e2e:with-policy
bare=localhost/wasmcell-e2e:no-policy

# -- the checks -------------------------------------------------------------------
passed=0 failed=0
n=0
# run_ctr NAME IMAGE [ctr run flags...] -- ARGS...: runs a container, filling
# $out, $err, $code and $report (the last line of stderr).
run_ctr() {
  local image=$1; shift
  local flags=()
  while [ "$1" != "--" ]; do flags+=("$1"); shift; done
  shift
  n=$((n + 1))
  set +e
  ctr_ run --rm --runtime "${runtime:-$shim}" "${flags[@]}" "$image" "e2e-$n" "$@" >"$tmp/out" 2>"$tmp/err"
  code=$?
  set -e
  out=$(cat "$tmp/out"); err=$(cat "$tmp/err")
  report=$(tail -n 1 "$tmp/err")
}
check() { # check NAME CONDITION-COMMAND...
  local name=$1; shift
  if "$@"; then
    passed=$((passed + 1)); echo "ok   $name"
  else
    failed=$((failed + 1)); echo "FAIL $name"
    printf '     exit %s\n     stdout: %s\n     stderr: %s\n' "$code" "$out" "$err" | head -30
  fi
}
has() { grep -qF -- "$2" <<<"$1"; }
lacks() { ! grep -qF -- "$2" <<<"$1"; }

ms() { date +%s%3N; }
t0=$(ms); run_ctr "$img" -- /hello.wasm; cold=$(( $(ms) - t0 ))
check "hello: output passes through" eval '[ "$code" = 0 ] && has "$out" "hello from wasmcell" && has "$report" "\"status\":\"exited\""'
t0=$(ms); run_ctr "$img" -- /hello.wasm; warm=$(( $(ms) - t0 ))
check "hello: a second run" eval '[ "$code" = 0 ] && has "$out" "hello from wasmcell"'
wall_up() { # every layer of the second wall in effect, by the report line
  local l
  for l in no-new-privs landlock-filesystem landlock-network landlock-scopes seccomp; do
    has "$report" "\"$l\":{\"in_effect\":true}" || return 1
  done
}
check "hello: the container's process is behind every layer of the second wall" wall_up

run_ctr "$img" -- /exit_code.wasm 7
check "exit_code: the guest's code 7 passes through" eval '[ "$code" = 7 ] && has "$report" "\"guest_exit_status\":7"'

run_ctr "$img" --env GREETING=hi --env SECRET=s3cret -- /env_vars.wasm
check "env_vars: only what the policy inherits" eval '[ "$code" = 0 ] && has "$out" "GREETING=hi" && lacks "$out" "SECRET" && lacks "$out" "PATH="'

run_ctr "$img" -- /net_tcp_connect_p2.wasm 127.0.0.1:9
check "net_tcp_connect: denied, and the report says so" eval '[ "$code" = 1 ] && has "$out" "refused" && has "$report" "\"kind\":\"tcp-socket\""'

run_ctr "$img" --memory-limit 67108864 -- /limits_memory_bomb.wasm
check "limits_memory_bomb: --memory-limit stops it with 137" eval '[ "$code" = 137 ] && has "$report" "\"status\":\"memory-limit\""'

# Kill: started in the background, killed once it has printed, so the signal
# reaches a running guest and not a container still starting.
n=$((n + 1)); sleeper="e2e-$n"
ctr_ run --rm --runtime "$shim" "$img" "$sleeper" /limits_sleep_forever.wasm >"$tmp/out" 2>"$tmp/err" &
sleeper_pid=$!; bg_pids+=("$sleeper_pid")
for _ in $(seq 150); do grep -q sleeping "$tmp/out" && break; sleep 0.2; done
ctr_ task kill "$sleeper" >/dev/null 2>&1 || true
set +e; wait "$sleeper_pid"; code=$?; set -e
bg_pids=()
out=$(cat "$tmp/out"); err=$(cat "$tmp/err"); report=$(tail -n 1 "$tmp/err")
check "limits_sleep_forever: ctr task kill cancels it with 143" eval '[ "$code" = 143 ] && has "$report" "\"status\":\"cancelled\""'

run_ctr "$bare" --env SECRET=s3cret -- /env_vars.wasm
check "no policy: an empty environment" eval '[ "$code" = 0 ] && [ -z "$out" ]'
run_ctr "$bare" -- /fs_read.wasm /hello.wasm
check "no policy: the image's files are not granted" eval '[ "$code" = 1 ] && has "$err" "error:"'
run_ctr "$bare" -- /net_tcp_connect_p2.wasm 127.0.0.1:9
check "no policy: no network" eval '[ "$code" = 1 ] && has "$report" "\"kind\":\"tcp-socket\""'

cat >"$tmp/policies/node-env.toml" <<'TOML'
[env]
vars = { FROM = "node" }
TOML
run_ctr "$img" --annotation wasmcell.dev/policy=node-env --env GREETING=hi -- /env_vars.wasm
check "annotation: the node policy replaces the image's" eval '[ "$code" = 0 ] && has "$out" "FROM=node" && lacks "$out" "GREETING"'
run_ctr "$img" --annotation wasmcell.dev/policy=absent -- /hello.wasm
check "annotation: a missing node policy stops the container" eval '[ "$code" = 2 ] && has "$err" "absent.toml" && lacks "$out" "hello"'

# The escape drill, from a container: the shim built with the test-only drill
# makes its own process try an escape; the wall refuses it or kills the
# container (159 = 128 + SIGSYS, as containerd reports a signal), and with the
# wall off (a node policy) the same attempt gets through.
cat >"$tmp/policies/wall-off.toml" <<'TOML'
[wall]
mode = "off"
TOML
runtime="$drill_dir/containerd-shim-wasmcell-v1"
run_ctr "$img" -- /drill_attempt.wasm read-file /hello.wasm
check "drill: reading an image file outside the grants is refused by Landlock" eval '[ "$code" = 0 ] && has "$out" "drill read-file: refused errno 13"'
run_ctr "$img" -- /drill_attempt.wasm list-root
check "drill: listing / is refused" eval '[ "$code" = 0 ] && has "$out" "drill list-root: refused errno 13"'
run_ctr "$img" -- /drill_attempt.wasm exec
check "drill: exec kills the container with the wall's 159" eval '[ "$code" = 159 ] && lacks "$out" "drill done"'
run_ctr "$img" -- /drill_attempt.wasm unix-socket
check "drill: a Unix socket is refused by seccomp" eval '[ "$code" = 0 ] && has "$out" "drill unix-socket: refused errno 1"'
run_ctr "$img" --annotation wasmcell.dev/policy=wall-off -- /drill_attempt.wasm read-file /hello.wasm
check "drill: with the wall off the same read gets through" eval '[ "$code" = 0 ] && has "$out" "drill read-file: ok"'
run_ctr "$img" --annotation wasmcell.dev/policy=wall-off -- /drill_attempt.wasm unix-socket
check "drill: with the wall off a Unix socket is made" eval '[ "$code" = 0 ] && has "$out" "drill unix-socket: ok"'
unset runtime

echo "hello: cold ctr run ${cold} ms, warm ${warm} ms"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
