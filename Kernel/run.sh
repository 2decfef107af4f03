#!/usr/bin/env bash
# Builds the kernel and boots it interactively. Type into the QEMU window (the PS/2 keyboard);
# the serial port is this terminal. Without a graphical display ($DISPLAY unset) it uses
# QEMU's curses display in this terminal instead and writes the serial port to
# Kernel/out/serial.log. Extra arguments go to QEMU. Enter ends the session (exit status 0).
set -euo pipefail
kernel_dir=$(cd "$(dirname "$0")" && pwd)
"$kernel_dir/build.sh"
io=(-serial stdio)
if [ -z "${DISPLAY:-}" ]; then
  io=(-display curses -serial "file:$kernel_dir/out/serial.log")
fi
status=0
qemu-system-i386 -kernel "$kernel_dir/out/kernel.elf" -no-reboot "${io[@]}" \
  -device isa-debug-exit,iobase=0xf4,iosize=0x04 "$@" || status=$?
# isa-debug-exit makes QEMU exit with (code << 1) | 1; the kernel writes 0x10 when it ends well.
if [ "$status" -eq 33 ]; then exit 0; fi
exit "$status"
