#!/usr/bin/env bash
# Writes an OCI image archive, offline, for `ctr image import`: one ordinary
# tar layer holding the given .wasm files at / and, optionally, a policy at
# /wasmcell.toml. containerd 1.6 cannot use Wasm-typed layers, so the module
# is a plain file and the shim reads it from the container's root.
#
# usage: shim/build-image.sh --name REF --out ARCHIVE.tar [--policy FILE] [--cmd PATH] WASM...
set -euo pipefail

name="" out="" policy="" cmd=""
wasm=()
while [ $# -gt 0 ]; do
  case "$1" in
    --name) name=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --policy) policy=$2; shift 2 ;;
    --cmd) cmd=$2; shift 2 ;;
    -*) echo "build-image: unknown option \`$1\`" >&2; exit 2 ;;
    *) wasm+=("$1"); shift ;;
  esac
done
if [ -z "$name" ] || [ -z "$out" ] || [ ${#wasm[@]} -eq 0 ]; then
  echo "build-image: usage: build-image.sh --name REF --out ARCHIVE.tar [--policy FILE] [--cmd PATH] WASM..." >&2
  exit 2
fi
[ -n "$cmd" ] || cmd="/$(basename "${wasm[0]}")"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/rootfs" "$work/oci/blobs/sha256"
for f in "${wasm[@]}"; do
  install -m 0644 "$f" "$work/rootfs/$(basename "$f")"
done
[ -z "$policy" ] || install -m 0644 "$policy" "$work/rootfs/wasmcell.toml"

sha() { sha256sum "$1" | cut -d' ' -f1; }
size() { stat -c %s "$1"; }
# Moves a file into the blob store under its digest and prints the digest.
blob() { local d; d=$(sha "$1"); mv "$1" "$work/oci/blobs/sha256/$d"; echo "$d"; }

# Reproducible: fixed owner, order and times, so the same inputs give the same digest.
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$work/rootfs" -cf "$work/layer.tar" .
layer_size=$(size "$work/layer.tar")
layer=$(blob "$work/layer.tar")

cat > "$work/config.json" <<JSON
{"architecture":"amd64","os":"linux","config":{"Cmd":["$cmd"],"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:$layer"]}}
JSON
config_size=$(size "$work/config.json")
config=$(blob "$work/config.json")

cat > "$work/manifest.json" <<JSON
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:$config","size":$config_size},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:$layer","size":$layer_size}]}
JSON
manifest_size=$(size "$work/manifest.json")
manifest=$(blob "$work/manifest.json")

cat > "$work/oci/index.json" <<JSON
{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:$manifest","size":$manifest_size,"platform":{"architecture":"amd64","os":"linux"},"annotations":{"io.containerd.image.name":"$name","org.opencontainers.image.ref.name":"${name##*:}"}}]}
JSON
echo '{"imageLayoutVersion":"1.0.0"}' > "$work/oci/oci-layout"
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$work/oci" -cf "$out" .
echo "build-image: wrote $out ($name, ${#wasm[@]} module(s)${policy:+, policy $policy})"
