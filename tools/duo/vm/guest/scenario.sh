#!/bin/sh
# The run the host asked for (/etc/storybot-vm/job.env), started by init once the boot
# scripts are done (the robot was started by S99storybot). Asks the running robot for
# a story with `storybot ask`, as a user would, and reports on the serial console in
# "SBVM key=value" lines; then a second story is queued and the VM powered off in the
# middle of it, so the shutdown shows the robot stopping on SIGTERM mid-story.
. /etc/storybot-vm/job.env
out=/var/lib/storybot/out
say() { echo "SBVM $*"; }
vm() { awk -v k="$1" '$1 == k {print $2}' /proc/vmstat; }
majflt() { awk '{print $12}' "/proc/$1/stat" 2>/dev/null; }
up() { cut -d' ' -f1 /proc/uptime; }

if [ "$SBVM_MODE" = probe ]; then
    poweroff
    exit 0
fi
if [ "$SBVM_MODE" = imports ]; then
    # the robot's memory import by import, with the board launcher's flags and without
    site=$(python3 -I -S -c 'import sys; print(sys.prefix + "/lib/python3/dist-packages")')
    python3 -I -S /etc/storybot-vm/imports.py /usr/lib/storybot "$site"
    python3 /etc/storybot-vm/imports.py /usr/lib/storybot
    rm -f /usr/lib/storybot/robot/_storybot_abi.py
    python3 -I -S /etc/storybot-vm/imports.py /usr/lib/storybot "$site" | sed 's/mode=lean/mode=lean-noabi/'
    say "scenario_done=1"
    poweroff
    exit 0
fi
mkdir -p $out
t0=$(up)
n=0
while [ ! -S /run/storybot/control.sock ] && [ $n -lt 1200 ]; do sleep 1; n=$((n + 1)); done
pid=$(cat /var/run/storybot.pid 2>/dev/null)
say "robot_ready_s=$(awk "BEGIN {print $(up) - $t0}") robot_pid=${pid:-none} ready_rss_kb=$(awk '/^VmRSS:/ {print $2}' /proc/$pid/status 2>/dev/null)"
say "mem_ready_kb=$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo)"
oom0=$(vm oom_kill)
t1=$(up)
# token events counted as they stream; the robot's major faults sampled at token 32
# the client: `storybot ask` (Python), or the bundle's static C one (--client c)
if [ "${SBVM_CLIENT:-storybot}" = c ]; then ask="/usr/lib/storybot/storybot-ask"; else ask="storybot ask --format jsonl"; fi
$ask -n "$SBVM_STEPS" -s "$SBVM_SEED" -t "$SBVM_TEMP" "$SBVM_PROMPT" 2> $out/ask.err | {
    k=0
    while IFS= read -r line; do
        case $line in
            *'"event": "token"'*)
                k=$((k + 1))
                [ $k -eq 1 ] && echo "$(majflt $pid) $(vm pgmajfault) $(up)" > /tmp/at1
                if [ $k -eq 32 ]; then
                    echo "$(majflt $pid) $(vm pgmajfault) $(up)" > /tmp/at32
                    # the ask client's own memory (a second Python while the story runs)
                    for p in $(pidof python3 storybot-ask); do
                        [ "$p" != "$pid" ] && awk '/^VmRSS:/ {r = $2} /^RssAnon:/ {a = $2} END {print r, a}' /proc/$p/status > /tmp/client_rss
                    done
                fi ;;
            *'"event": "summary"'*)
                echo "$(majflt $pid) $(vm pgmajfault) $(up)" > /tmp/atend
                echo "$line" > $out/end.json ;;
        esac
    done
    echo $k > /tmp/ntok
}
say "ask_rc_tail=$(tail -c 300 $out/ask.err | tr '\n' ' ')"
say "story_tokens=$(cat /tmp/ntok 2>/dev/null) story_s=$(awk "BEGIN {print $(up) - $t1}")"
say "majflt_at1=$(cat /tmp/at1 2>/dev/null | tr ' ' ,) majflt_at32=$(cat /tmp/at32 2>/dev/null | tr ' ' ,) majflt_end=$(cat /tmp/atend 2>/dev/null | tr ' ' ,)"
say "end=$(cat $out/end.json 2>/dev/null)"
say "robot_hwm_kb=$(awk '/^VmHWM:/ {print $2}' /proc/$pid/status 2>/dev/null) robot_alive=$(kill -0 $pid 2>/dev/null && echo 1 || echo 0) robot_pid_now=$(cat /var/run/storybot.pid 2>/dev/null)"
set -- $(cat /tmp/client_rss 2>/dev/null)
say "client_rss_kb=$1 client_anon_kb=$2 robot_anon_kb=$(awk '/^RssAnon:/ {print $2}' /proc/$pid/status 2>/dev/null) robot_file_kb=$(awk '/^RssFile:/ {print $2}' /proc/$pid/status 2>/dev/null)"
say "oom_kills=$(( $(vm oom_kill) - oom0 )) mem_after_kb=$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo)"
[ -f $out/story.wav ] && cp $out/story.wav $out/story1.wav && say "wav_bytes=$(wc -c < $out/story1.wav)"
# a second story, interrupted by the shutdown (not when the first one failed: a robot
# short of memory would only thrash through it)
if grep -q '"stop": "steps"\|"stop": "bos"' $out/end.json 2>/dev/null; then
    if [ "${SBVM_CLIENT:-storybot}" = c ]; then
        $ask -n "$SBVM_STEPS" -s 7 "$SBVM_PROMPT" > /dev/null 2>&1 &
    else
        storybot ask --no-wait -n "$SBVM_STEPS" -s 7 "$SBVM_PROMPT" > /dev/null 2>&1
    fi
    sleep 3
fi
say "scenario_done=1"
poweroff
