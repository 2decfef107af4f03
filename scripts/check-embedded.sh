#!/usr/bin/env bash
# Compiles TideCore as Embedded Swift for bare-metal x86 targets, so the core stays usable with
# no OS (see Kernel/). Fails on any error; warnings in our code are errors too.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for target in x86_64-unknown-none-elf i686-unknown-none-elf; do
  swiftc -enable-experimental-feature Embedded -target "$target" -wmo -parse-as-library \
    -swift-version 6 -warnings-as-errors -module-name TideCore -c Sources/TideCore/*.swift \
    -o "$out/TideCore-$target.o"
  echo "TideCore compiles as Embedded Swift for $target"
done
