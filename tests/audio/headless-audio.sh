#!/usr/bin/env bash
# Headless audio for PyAudio on Debian 12 with no sound card (CI / containers, works as root).
# The project's copy of the verified recipe (see tests/peers/pulse.py for the pytest side).
#
# PulseAudio runs as a plain per-user daemon (no systemd, no D-Bus, no --system),
# with two clocked null sinks:
#     spk  - "speaker":    whatever an app plays lands here; read it back from spk.monitor
#     mic  - "microphone": a test plays a signal into mic; an app records mic.monitor
#            (or the remapped source "virtmic")
# The ALSA "pulse" plugin (libasound2-plugins) gives PortAudio/PyAudio two ALSA
# devices, "pulse" and "default", which talk to the Pulse defaults:
#     default sink = spk, default source = spk.monitor  (=> output loops back into input)
# Per process, PULSE_SINK=<sink> / PULSE_SOURCE=<source> override which Pulse
# device the ALSA "pulse"/"default" PCM uses (e.g. PULSE_SOURCE=virtmic).
#
# Usage (packages come from `make setup`):
#   tests/audio/headless-audio.sh start     # start daemon + keep-alives, print env file path
#   . "$HEADLESS_AUDIO_DIR/env"             # in every shell/process that uses audio
#   tests/audio/headless-audio.sh status
#   tests/audio/headless-audio.sh stop      # by PID files only
#
# Env: HEADLESS_AUDIO_DIR (default /tmp/softphone-audio-$UID), HEADLESS_AUDIO_RATE (48000).
# PID files: $DIR/pulse/pid (daemon), $DIR/keepalive-{spk,mic}.pid.
set -euo pipefail

DIR="${HEADLESS_AUDIO_DIR:-/tmp/softphone-audio-$(id -u)}"
RATE="${HEADLESS_AUDIO_RATE:-48000}"
SOCK="$DIR/pulse/native"
ENVF="$DIR/env"

env_exports() {
    cat <<EOF
export XDG_RUNTIME_DIR="$DIR"
export PULSE_SERVER="unix:$SOCK"
export PULSE_SINK=spk
export PULSE_SOURCE=spk.monitor
EOF
}

is_running() {
    [ -S "$SOCK" ] && PULSE_SERVER="unix:$SOCK" pactl info >/dev/null 2>&1
}

start() {
    command -v pulseaudio >/dev/null || { echo "pulseaudio not installed: run 'make setup'" >&2; exit 1; }
    if is_running; then echo "already running"; env_exports > "$ENVF"; echo "$ENVF"; return 0; fi
    mkdir -p "$DIR/pulse" "$DIR/home"
    chmod 700 "$DIR" "$DIR/pulse"
    rm -f "$SOCK" "$DIR/pulse/pid"
    # HOME -> private dir so the daemon's cookie/state never touch the real home.
    # Running as root without --system prints a warning but works (per-user mode).
    # -n: ignore /etc/pulse/default.pa (it would try udev/ALSA card detection, D-Bus, X11...)
    # --disable-shm: samples go over the socket, not memfd/shm blocks; with those, Pulse 16
    # aborted mid-run (memblock.c "n_imported > 0" assertion, pulseaudio issue 824) and
    # every later audio test failed
    HOME="$DIR/home" XDG_RUNTIME_DIR="$DIR" XDG_CONFIG_HOME="$DIR/home/.config" \
    pulseaudio --daemonize=yes --use-pid-file=yes -n --disable-shm=yes \
        --exit-idle-time=-1 --disallow-exit=yes \
        --log-target="file:$DIR/pulse.log" --log-level=notice \
        -L "module-native-protocol-unix auth-anonymous=1 socket=$SOCK" \
        -L "module-null-sink sink_name=spk rate=$RATE channels=1 sink_properties=device.description=HeadlessSpeaker" \
        -L "module-null-sink sink_name=mic rate=$RATE channels=1 sink_properties=device.description=HeadlessMicFeed" \
        -L "module-remap-source source_name=virtmic master=mic.monitor source_properties=device.description=HeadlessMic" \
        2>>"$DIR/pulse.log" || true
    for _ in $(seq 1 50); do is_running && break; sleep 0.1; done
    is_running || { echo "pulseaudio failed to start; see $DIR/pulse.log" >&2; tail -20 "$DIR/pulse.log" >&2; exit 1; }
    export PULSE_SERVER="unix:$SOCK"
    pactl set-default-sink spk
    pactl set-default-source spk.monitor
    # Keep-alive readers: an idle module-null-sink sleeps up to 2 s between wake-ups, so the
    # first read/write of a new stream stalls ~1.5-2 s.  A permanent 10 ms-latency reader on
    # each monitor keeps the sinks ticking every 10 ms (costs ~1% CPU).
    for s in spk mic; do
        nohup parec --raw --latency-msec=10 -d "$s.monitor" >/dev/null 2>&1 &
        echo $! > "$DIR/keepalive-$s.pid"
    done
    # wait until both keep-alive readers are attached (matters on a loaded CI box)
    for _ in $(seq 1 50); do
        [ "$(pactl list short source-outputs 2>/dev/null | wc -l)" -ge 2 ] && break
        sleep 0.1
    done
    env_exports > "$ENVF"
    echo "started pulseaudio pid $(cat "$DIR/pulse/pid" 2>/dev/null || echo '?'); env: . $ENVF"
    echo "$ENVF"
}

stop() {
    for f in "$DIR"/keepalive-*.pid; do
        [ -f "$f" ] || continue
        kill "$(cat "$f")" 2>/dev/null || true
        rm -f "$f"
    done
    if [ -f "$DIR/pulse/pid" ]; then
        kill "$(cat "$DIR/pulse/pid")" 2>/dev/null || true
        for _ in $(seq 1 30); do is_running || break; sleep 0.1; done
    fi
    rm -f "$SOCK" "$DIR/pulse/pid"
    echo "stopped"
}

status() {
    if is_running; then
        PULSE_SERVER="unix:$SOCK" pactl info | grep -E 'Server Version|Default (Sink|Source)'
        PULSE_SERVER="unix:$SOCK" pactl list short sinks
        PULSE_SERVER="unix:$SOCK" pactl list short sources
    else
        echo "not running"; return 1
    fi
}

case "${1:-}" in
    start)   start ;;
    stop)    stop ;;
    restart) stop; start ;;
    status)  status ;;
    env)     env_exports ;;
    *) echo "usage: $0 {start|stop|restart|status|env}" >&2; exit 2 ;;
esac
