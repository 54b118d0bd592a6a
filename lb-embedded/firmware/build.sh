#!/usr/bin/env bash
# Builds the lb-embedded firmware example for thumbv7em-none-eabihf (release) and prints its
# flash and RAM use, measured from the linked ELF. Fails if the gateway's resources are not in
# .bss (i.e. if GatewayResources::new() stopped being all zero bits, or the sync socket's, the
# health probes' or the health checker's storage stopped being a StaticCell).
#
# Usage: lb-embedded/firmware/build.sh   (from anywhere)
set -euo pipefail
cd "$(dirname "$0")"

cargo build --release --quiet
elf=target/thumbv7em-none-eabihf/release/lb-embedded-firmware

# Section sizes: llvm-size (LLVM or rustup's llvm-tools), else GNU size, else readelf.
sizes() {
	local tool
	for tool in llvm-size rust-size arm-none-eabi-size size; do
		if command -v "$tool" >/dev/null 2>&1 && "$tool" -A "$elf" >/dev/null 2>&1; then
			"$tool" -A "$elf" | awk 'NF == 3 && $2 ~ /^[0-9]+$/ { print $1, $2 }'
			return
		fi
	done
	readelf -SW "$elf" | sed -n 's/^ *\[ *[0-9]*\] *//p' | while read -r name _ _ _ size _; do
		echo "$name $((16#$size))"
	done
}

declare -A sec
while read -r name size; do sec[$name]=$size; done < <(sizes)
vt=${sec[.vector_table]:-0} text=${sec[.text]:-0} rodata=${sec[.rodata]:-0}
data=${sec[.data]:-0} bss=${sec[.bss]:-0} uninit=${sec[.uninit]:-0}
flash=$((vt + text + rodata + data))
ram=$((data + bss + uninit))

echo "firmware: $elf"
echo "target: thumbv7em-none-eabihf, memory.x: nRF52840 (1024 KiB flash, 256 KiB RAM)"
echo "gateway: 1,024 connections, 16 neighbours, 4 routes, 4 held frames; director 4 services x 8 servers; sync master and backup; one health check (2 probe sockets)"
kib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1024 }'; }
printf 'flash %7d B (%s KiB)  = vector table %d + .text %d + .rodata %d + .data image %d\n' \
	"$flash" "$(kib "$flash")" "$vt" "$text" "$rodata" "$data"
printf 'RAM   %7d B (%s KiB)  = .data %d + .bss %d (+ stack)\n' \
	"$ram" "$(kib "$ram")" "$data" "$bss"

# The statics: where each landed (b/B = .bss, d/D = .data).
if command -v nm >/dev/null 2>&1; then
	nm -S -C "$elf" | grep -E 'lb_embedded_firmware::(RES|DIR|SYNC|PROBES|HEALTH)$' | while read -r _ size kind name; do
		case $kind in [bB]) where=.bss ;; *) where=.data ;; esac
		printf '  static %-28s %6d B in %s\n' "$name" "$((16#$size))" "$where"
	done
	# (Read nm's output whole first: `nm | grep -q` fails under pipefail when grep exits early.)
	symbols=$(nm -C "$elf")
	if ! grep -Eq ' [bB] lb_embedded_firmware::RES$' <<<"$symbols" ||
		! grep -Eq ' [bB] lb_embedded_firmware::DIR$' <<<"$symbols" ||
		! grep -Eq ' [bB] lb_embedded_firmware::SYNC$' <<<"$symbols" ||
		! grep -Eq ' [bB] lb_embedded_firmware::PROBES$' <<<"$symbols" ||
		! grep -Eq ' [bB] lb_embedded_firmware::HEALTH$' <<<"$symbols"; then
		echo "error: the gateway, director, sync, probe or health resources are not in .bss" >&2
		exit 1
	fi
fi
