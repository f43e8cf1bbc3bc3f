#!/usr/bin/env bash
# Build influxd (InfluxDB OSS 2.7, with Flux) from the Go module proxy.
#
#   deploy/influxdb/build.sh <out_dir>      -> <out_dir>/influxd
#
# Exits at once if <out_dir>/influxd exists. Build state (GOPATH, Go build
# cache, cargo home, libflux target dir, source copy) goes to
# $INFLUXDB_BUILD_STATE, default <out_dir>/../build.
# Needs: Go >= 1.23, a rustup-managed cargo/rustc (libflux is Rust; crates come
# from crates.io), and gcc, libc6-dev, pkg-config (apt-installed if missing).
set -euo pipefail

[ $# -eq 1 ] || { echo "usage: $0 <out_dir>" >&2; exit 2; }
mkdir -p "$1"
OUT=$(cd "$1" && pwd)
[ -x "$OUT/influxd" ] && exit 0

VERSION=${INFLUXDB_VERSION:-v2.7.12}
STATE=${INFLUXDB_BUILD_STATE:-$(dirname "$OUT")/build}
mkdir -p "$STATE"
STATE=$(cd "$STATE" && pwd)
export PATH="/usr/local/go/bin:${CARGO_HOME:-$HOME/.cargo}/bin:$HOME/.cargo/bin:$PATH"

missing=()
command -v gcc >/dev/null || missing+=(gcc)
[ -e /usr/include/stdio.h ] || missing+=(libc6-dev)
command -v pkg-config >/dev/null || missing+=(pkg-config)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v go >/dev/null || { echo "build.sh: go not found" >&2; exit 1; }
command -v cargo >/dev/null || { echo "build.sh: cargo (rustup) not found" >&2; exit 1; }

export GOPATH="$STATE/gopath" GOMODCACHE="$STATE/gopath/pkg/mod" GOCACHE="$STATE/gocache"
export GOFLAGS="-modcacherw -buildvcs=false" GOTOOLCHAIN=local CGO_ENABLED=1 GO111MODULE=on
export CARGO_HOME="$STATE/cargo"
unset CARGO_TARGET_DIR GOWORK
cd "$STATE"
# libflux pins Rust 1.72 (rust-toolchain.toml); use the installed default instead,
# and cap lints since its #![deny(warnings)] trips on newer rustc lints.
if command -v rustup >/dev/null; then
  RUSTUP_TOOLCHAIN=$(rustup show active-toolchain | cut -d' ' -f1)
  export RUSTUP_TOOLCHAIN
fi
mkdir -p "$STATE/tools"
cat > "$STATE/tools/rustc-wrapper" <<'EOF'
#!/bin/sh
case " $* " in *" --cap-lints"*) exec "$@" ;; esac
exec "$@" --cap-lints warn
EOF
chmod +x "$STATE/tools/rustc-wrapper"
export RUSTC_WRAPPER="$STATE/tools/rustc-wrapper"

# The module has a replace directive, so `go install mod@version` refuses it:
# build inside a writable copy of the module source instead.
MODDIR=$(go mod download -json "github.com/influxdata/influxdb/v2@$VERSION" |
  sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
SRC="$STATE/src-$VERSION"
if [ ! -f "$SRC/go.mod" ]; then
  rm -rf "$SRC.tmp" && cp -r "$MODDIR" "$SRC.tmp" && chmod -R u+w "$SRC.tmp" && mv "$SRC.tmp" "$SRC"
fi
cd "$SRC"
go build -o "$STATE/tools/pkg-config" github.com/influxdata/pkg-config
export PKG_CONFIG="$STATE/tools/pkg-config"
go build -tags sqlite_foreign_keys,sqlite_json \
  -ldflags "-s -w -X main.version=${VERSION#v} -X main.commit=none" \
  -o "$OUT/influxd.tmp" ./cmd/influxd
mv "$OUT/influxd.tmp" "$OUT/influxd"
echo "built $OUT/influxd ($VERSION)"
# The build caches (Go modules, Go build cache, cargo, libflux target: ~2.9 GB)
# are only needed to build again; keep them with INFLUXDB_KEEP_BUILD=1.
if [ "${INFLUXDB_KEEP_BUILD:-0}" != 1 ]; then
  chmod -R u+w "$STATE" 2>/dev/null || true
  rm -rf "$STATE"
fi
