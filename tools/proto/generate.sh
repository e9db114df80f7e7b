#!/usr/bin/env bash
# Regenerates the committed swift-protobuf code from the .proto sources. Needs protoc
# (Debian: protobuf-compiler) and builds protoc-gen-swift once from the swift-protobuf version
# the package depends on, in .build-protoc (git-ignored). CI never runs this: the generated
# files are committed.
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v protoc >/dev/null || { echo "install protoc (apt-get install protobuf-compiler)" >&2; exit 1; }

VERSION=1.39.0
PLUGIN_SRC=.build-protoc/swift-protobuf
if [ ! -x "$PLUGIN_SRC/.build/release/protoc-gen-swift" ]; then
  rm -rf "$PLUGIN_SRC"
  git clone -q --branch "$VERSION" https://github.com/apple/swift-protobuf "$PLUGIN_SRC"
  (cd "$PLUGIN_SRC" && swift build -c release --product protoc-gen-swift)
fi
PLUGIN="$PLUGIN_SRC/.build/release/protoc-gen-swift"

gen() {  # gen <proto dir> <out dir> <visibility> <files...>
  local dir=$1 out=$2 visibility=$3; shift 3
  protoc --plugin=protoc-gen-swift="$PLUGIN" --swift_out="$out" --swift_opt=Visibility="$visibility" -I "$dir" "$@"
}
gen Sources/ParleyProtocol/Proto Sources/ParleyProtocol/Generated Internal \
  Sources/ParleyProtocol/Proto/WireFormat.proto Sources/ParleyProtocol/Proto/LocalStorage.proto \
  Sources/ParleyProtocol/Proto/Fingerprint.proto
gen Sources/ParleyFormats/Content/Proto Sources/ParleyFormats/Content/Generated Public \
  Sources/ParleyFormats/Content/Proto/Content.proto
echo "regenerated; review with git diff"
