#!/usr/bin/env bash
# Builds Kernel/out/kernel.elf: TideCore (compiled unchanged from ../Sources/TideCore) and the
# kernel's Swift files as two Embedded Swift modules, plus boot.S and support.c, linked at 1 MiB.
# Code is generated for a plain i686 (no SSE/MMX): the interrupt stubs save only the general
# registers, so handler code must not touch vector registers.
set -euo pipefail
kernel_dir=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$kernel_dir")
toolchain=${TOOLCHAIN:-/opt/swift/usr/bin}
out="$kernel_dir/out"
mkdir -p "$out"

target=i686-unknown-none-elf
swift_flags=(-enable-experimental-feature Embedded -target "$target" -target-cpu i686
  -Xcc -mno-sse -Xcc -mno-mmx -Xcc -ffreestanding
  -wmo -parse-as-library -swift-version 6 -warnings-as-errors -Osize)
c_flags=(--target="$target" -march=i686 -mno-sse -mno-mmx -ffreestanding -fno-builtin -nostdlib
  -O2 -Wall -Wextra -Werror -I "$kernel_dir/include")

"$toolchain/swiftc" "${swift_flags[@]}" -module-name TideCore \
  -emit-module -emit-module-path "$out/TideCore.swiftmodule" \
  -c "$root"/Sources/TideCore/*.swift -o "$out/TideCore.o"
"$toolchain/swiftc" "${swift_flags[@]}" -module-name TideKernel -I "$out" -I "$kernel_dir/include" \
  -c "$kernel_dir"/Swift/*.swift -o "$out/TideKernel.o"
"$toolchain/clang" "${c_flags[@]}" -c "$kernel_dir/support.c" -o "$out/support.o"
"$toolchain/clang" "${c_flags[@]}" -c "$kernel_dir/builtins.c" -o "$out/builtins.o"
"$toolchain/clang" --target="$target" -c "$kernel_dir/boot.S" -o "$out/boot.o"
"$toolchain/ld.lld" -m elf_i386 -T "$kernel_dir/linker.ld" -nostdlib --gc-sections -o "$out/kernel.elf" \
  "$out/boot.o" "$out/support.o" "$out/builtins.o" "$out/TideCore.o" "$out/TideKernel.o"
echo "built $out/kernel.elf"
