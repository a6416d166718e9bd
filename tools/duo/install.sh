#!/bin/sh
# Installs storybot from this unpacked bundle (BusyBox sh is enough).
#   on the Duo:                   sh install.sh
#   into an image or a test root: DESTDIR=/path/to/root sh install.sh
#   remove (keeps config and models): sh install.sh --uninstall
# Installing the init script is what enables the service: BusyBox init runs every
# /etc/init.d/S??* at boot. On a board with systemd the unit is enabled as well.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
D=${DESTDIR:-}
D=${D%/}
say() { echo "storybot install: $*"; }
die() { echo "storybot install: $*" >&2; exit 2; }

if [ "${1:-}" = "--uninstall" ]; then
    [ -z "$D" ] && [ -x /etc/init.d/S99storybot ] && /etc/init.d/S99storybot stop || true
    rm -rf "$D/usr/lib/storybot"
    rm -f "$D/usr/bin/storybot" "$D/etc/init.d/S99storybot" "$D/usr/lib/systemd/system/storybot.service"
    say "removed; $D/etc/storybot and the models in $D/var/lib/storybot were kept"
    exit 0
fi

cd "$here"
# A bundle truncated on its way over USB would otherwise install half a robot.
if command -v sha256sum >/dev/null 2>&1; then
    sha256sum -c SHA256SUMS >/dev/null 2>&1 || die "the bundle is damaged (checksum mismatch); copy the .tar.gz to the board again"
fi

# Upgrades replace the package wholesale so no module of an older version lingers.
rm -rf "$D/usr/lib/storybot"
mkdir -p "$D/usr/lib/storybot" "$D/usr/bin" "$D/etc/init.d" "$D/etc/storybot" "$D/var/lib/storybot" \
         "$D/usr/lib/systemd/system"
cp -R files/usr/lib/storybot/. "$D/usr/lib/storybot/"
cp files/usr/bin/storybot "$D/usr/bin/storybot"
cp files/etc/init.d/S99storybot "$D/etc/init.d/S99storybot"
cp files/usr/lib/systemd/system/storybot.service "$D/usr/lib/systemd/system/storybot.service"
chmod 755 "$D/usr/bin/storybot" "$D/etc/init.d/S99storybot"

if [ -f "$D/etc/storybot/storybot.toml" ]; then
    cp files/etc/storybot/storybot.toml "$D/etc/storybot/storybot.toml.new"
    say "kept your $D/etc/storybot/storybot.toml; this version's default is beside it as storybot.toml.new"
else
    cp files/etc/storybot/storybot.toml "$D/etc/storybot/storybot.toml"
fi
say "installed $(cat VERSION) into ${D:-/}"

# Only on the live board: check the kernel loads here, enable systemd if present, and
# start the robot when a model is already in place.
if [ -z "$D" ]; then
    storybot_isa=$(PYTHONPATH=/usr/lib/storybot python3 -c 'from robot.kernel.lib import lib, ffi; print(ffi.string(lib.sb_isa()).decode())' 2>&1) \
        || die "the installed kernel does not load with this board's python3: $storybot_isa"
    say "kernel loads (isa $storybot_isa)"
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        # the unit runs as user storybot (group audio for the sound card)
        if ! id storybot >/dev/null 2>&1; then
            if command -v useradd >/dev/null 2>&1; then
                useradd --system --home-dir /var/lib/storybot --groups audio storybot
            else
                adduser -S -D -H -h /var/lib/storybot storybot && addgroup storybot audio 2>/dev/null || true
            fi
        fi
        systemctl daemon-reload && systemctl enable storybot.service
    fi
    model=""
    for f in /var/lib/storybot/stories*; do [ -f "$f" ] && model=$f; done
    if [ -n "$model" ] && [ -f /var/lib/storybot/tokenizer.bin ]; then
        if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
            systemctl restart storybot.service
        else
            /etc/init.d/S99storybot restart
        fi
    else
        say "next: copy a model and tokenizer.bin into /var/lib/storybot (under a temporary name, then mv; docs/duo.md), then /etc/init.d/S99storybot start"
    fi
fi
