#!/usr/bin/env bash
# Boots the kernel headless under QEMU, types "hello" + Enter through the QEMU monitor's sendkey,
# and checks the serial output and the exit status:
#   - the banner appears, at least one tick line is printed (the tick task ran),
#   - the keyboard task echoes exactly h, e, l, l, o and then the line "hello",
#   - the kernel exits through isa-debug-exit with code 0x10 (QEMU status 33).
# Needs no TTY or stdin. Installs qemu-system-x86 with apt-get when qemu-system-i386 is missing.
# The QEMU part is bounded to 60 s; QEMU is killed on any failure. Prints PASS or FAIL.
set -euo pipefail
kernel_dir=$(cd "$(dirname "$0")" && pwd)

if ! command -v qemu-system-i386 >/dev/null 2>&1; then
  echo "test.sh: installing qemu-system-x86"
  sudo_cmd=()
  if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo -n); fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq </dev/null
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends qemu-system-x86 </dev/null >/dev/null
fi

"$kernel_dir/build.sh" </dev/null

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
status=0
timeout -k 5 60 python3 - "$kernel_dir/out/kernel.elf" "$work" </dev/null <<'PYTHON' || status=$?
import os, re, signal, socket, subprocess, sys, time

kernel, work = sys.argv[1], sys.argv[2]
serial_path = os.path.join(work, "serial.txt")
monitor_path = os.path.join(work, "monitor.sock")
typed = "hello"
expected_exit = (0x10 << 1) | 1

def on_term(signum, frame):
    raise SystemExit("killed by timeout")
signal.signal(signal.SIGTERM, on_term)

def serial():
    try:
        with open(serial_path, "rb") as f:
            return f.read().decode("ascii", "replace").replace("\r", "")
    except FileNotFoundError:
        return ""

def wait_for(predicate, what, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        if qemu.poll() is not None:
            raise AssertionError(f"QEMU exited (status {qemu.returncode}) while waiting for {what}")
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")

class Monitor:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5)
        self.sock.connect(path)
        self.buffer = b""
        self.until_prompt()

    def until_prompt(self):
        while b"(qemu) " not in self.buffer:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise AssertionError("monitor closed")
            self.buffer += chunk
        self.buffer = b""

    def command(self, line):
        self.sock.sendall(line.encode() + b"\n")
        self.until_prompt()

start = time.monotonic()
qemu = subprocess.Popen(
    ["qemu-system-i386", "-kernel", kernel, "-display", "none", "-no-reboot",
     "-serial", f"file:{serial_path}", "-monitor", f"unix:{monitor_path},server=on,wait=off",
     "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"],
    stdin=subprocess.DEVNULL)
failure = None
try:
    wait_for(lambda: "Tide kernel" in serial(), "the banner", 20)
    wait_for(lambda: os.path.exists(monitor_path), "the monitor socket", 5)
    monitor = Monitor(monitor_path)
    # Let more than one second of guest time pass, so the tick task must have printed.
    wait_for(lambda: re.search(r"^tick 1 s", serial(), re.M), "the first tick line", 20)
    # Type part of the line, wait for the next tick line, then type the rest: the output must
    # show the two tasks taking turns on the one CPU.
    for index, key in enumerate(typed):
        if index == 3:
            ticks_so_far = len(re.findall(r"^tick ", serial(), re.M))
            wait_for(lambda: len(re.findall(r"^tick ", serial(), re.M)) > ticks_so_far,
                     "a tick line between keys", 5)
        monitor.command(f"sendkey {key}")
        time.sleep(0.1)
    monitor.command("sendkey ret")
    try:
        qemu.wait(timeout=20)
    except subprocess.TimeoutExpired:
        raise AssertionError("kernel did not exit after Enter")
    out = serial()
    keys = "".join(re.findall(r"^key '(.)'$", out, re.M))
    if keys != typed:
        raise AssertionError(f"keyboard task echoed {keys!r}, expected {typed!r}")
    if f'line "{typed}"' not in out.splitlines():
        raise AssertionError(f'no line "{typed}" in the output')
    if not re.search(r"^tick \d+ s", out, re.M):
        raise AssertionError("no tick line")
    if "KERNEL PANIC" in out:
        raise AssertionError("the kernel panicked")
    lines = out.splitlines()
    key_lines = [i for i, line in enumerate(lines) if line.startswith("key ")]
    if not any(line.startswith("tick ") for line in lines[key_lines[0]:key_lines[-1]]):
        raise AssertionError("no tick line between the keyboard task's lines")
    if "summary:" not in out:
        raise AssertionError("no summary line")
    if qemu.returncode != expected_exit:
        raise AssertionError(f"QEMU exited with {qemu.returncode}, expected {expected_exit}")
except (AssertionError, OSError, SystemExit) as error:
    failure = str(error) or type(error).__name__
finally:
    if qemu.poll() is None:
        qemu.kill()
        qemu.wait()

print("---- serial output ----")
print(serial().rstrip())
print("-----------------------")
elapsed = time.monotonic() - start
if failure:
    print(f"FAIL: kernel test: {failure} ({elapsed:.1f} s)")
    sys.exit(1)
print(f"PASS: kernel test: typed {typed!r} + Enter, echoed by the keyboard task, ticks printed, "
      f"exit status {qemu.returncode} ({elapsed:.1f} s)")
PYTHON
if [ "$status" -ne 0 ]; then
  [ "$status" -eq 124 ] && echo "FAIL: kernel test: timed out after 60 s"
  exit "$status"
fi
