#!/usr/bin/env bash
# What only a real GPU can show, in one run on a lent GPU machine (the device tool), from the
# repo root, with the project's wheels carried in .whl (docs/testing.md says how they are made):
#
#   the GPU sampler's and doctor's answers, NVML's call costs against nvidia-smi, an nvidia-smi
#   capture (idle and under load) for the NVML double, and four traces recorded by
#   `ironsight record` while a collector stores them live: idle, a matrix-multiply burn, a
#   training loop whose data loader is starved of CPU, and a lock-step job with one slowed rank
#   (tools/gpu_workloads.py). Each workload logs its phases, so tests hold the traces against
#   what the job itself saw.
#
# Results: $OUT/h200-*.trace and $OUT/report.tar.gz (every log, capture and answer). Nothing
# here changes the GPU's settings. SMOKE=1 runs the same steps on a machine without a GPU, with
# the workloads on the CPU (WLPY: a python with torch) and short phases, to check the script
# before a lease is spent on it. STEPS picks the parts (default "probe traces"; also "overhead",
# the agent's CPU on this machine, interleaved with an earlier build's if .whl-old holds one,
# "pcie", tools/pcie_probe.py, "copy", a trace of known bytes copied each way over PCIe, and
# "transfer", a trace of training steps that wait on their batch's copy to the GPU).
set -u
OUT=${OUT:?where the results go}
W=/tmp/gpu-work
rm -rf "$W" && mkdir -p "$W"
T0=$SECONDS
say() { echo "== $((SECONDS - T0))s $*"; }
pack() { tar -czf "$OUT/report.tar.gz" --exclude="*.duckdb*" -C "$W" . 2>/dev/null; }
trap pack EXIT

if [ "${SMOKE:-}" = 1 ]; then
    BIN=$PWD/.venv/bin SITE= WL="--device cpu" SCALE=10
else
    BIN=/tmp/site/bin SITE=/tmp/site WL="" SCALE=1
    say install
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl \
        >"$W/pip.txt" 2>&1 || { cat "$W/pip.txt"; exit 1; }
fi
PY=$(command -v python3)
[ -n "$SITE" ] || PY=$BIN/python
ours() { PYTHONPATH=$SITE "$PY" "$BIN/$@"; }  # our commands under the image's python, with our wheels
secs() { echo $(($1 / SCALE + 2)); }

probe() {
say environment
{ uname -a; nproc; free -g; df -h /tmp /dev/shm; python3 -V; nvidia-smi; PYTHONPATH=$SITE python3 -m pip list
  ls /sys/class/net /sys/class/infiniband /sys/class/nvme; cat /proc/pressure/cpu; } >"$W/env.txt" 2>&1
command -v nvidia-smi >/dev/null && python3 tools/smi_capture.py idle "$W/capture.txt"

say doctor
{ ours ironsight doctor; echo "exit $?"; ours ironsight doctor --user nobody; echo "exit $?"; } >"$W/doctor.txt" 2>&1
say "agent --once"
ours ironsight-agent --once >"$W/agent-once.prom" 2>"$W/agent-once.err"; echo "exit $?" >>"$W/agent-once.err"
say nvml-calls
(cd bench && PYTHONPATH=$SITE timeout 120 "$PY" -c "
import argparse, json
import nvml_calls  # from bench/: the checkout's ironsight/ folder holds only the generated stubs
print(json.dumps(nvml_calls.run(argparse.Namespace(nvml_rounds=200, smi_rounds=10)), indent=1, default=str))
") >"$W/nvml-calls.json" 2>"$W/nvml-calls.err"
pack
}

collector() {
say collector
# Each step that starts one adds to the same log and nvidia-smi log: a run of several steps keeps them all.
PYTHONPATH=$SITE "$PY" "$BIN/ironsight-collector" --db "$W/h200.duckdb" --listen 127.0.0.1:7070 --insecure \
    --http-listen 127.0.0.1:9470 >>"$W/collector.log" 2>&1 &
COL=$!  # the collector's own pid (not a subshell's), so that TERM reaches it and it closes the file
SMI=
if command -v nvidia-smi >/dev/null; then
    format=csv; [ -s "$W/smi-log.csv" ] && format=csv,noheader  # one header, whatever the steps
    nvidia-smi --query-gpu=timestamp,utilization.gpu,utilization.memory,power.draw,clocks.sm,clocks.mem,temperature.gpu,memory.used,clocks_event_reasons.active \
        --format=$format -lms 500 >>"$W/smi-log.csv" 2>&1 &
    SMI=$!
fi
sleep 3
}

stop_collector() {
[ -n "$SMI" ] && kill "$SMI"
kill -TERM "$COL"; wait "$COL"; echo "collector exit $?" >>"$W/collector.log"
}

record() {  # NAME SECONDS: the agent's samplers into $OUT/h200-NAME.trace and the collector, in the background
    ours ironsight record --out "$OUT/h200-$1.trace" --duration "$(secs "$2")s" --interval 1 --node-id h200 \
        --tee-collector 127.0.0.1:7070 --insecure >"$W/record-$1.log" 2>&1 &
    REC=$!
    sleep 4  # the trace starts with the GPU as the workload found it
}
workload() { ${WLPY:-python3} tools/gpu_workloads.py "$@" $WL >"$W/$1.out" 2>&1; echo "exit $?" >>"$W/$1.out"; }

traces() {
collector
say idle
record idle 20; wait $REC; pack
say burn
record burn 50
[ -n "$SMI" ] && (sleep 20 && python3 tools/smi_capture.py load "$W/capture.txt") &
workload burn --seconds "$(secs 40)" --log "$W/burn.jsonl"; wait $REC; pack
say starved
record starved 130
workload starved --healthy-seconds "$(secs 35)" --starved-seconds "$(secs 75)" --log "$W/starved.jsonl"; wait $REC; pack
say lockstep
record lockstep 65
workload lockstep --seconds "$(secs 45)" --step-seconds 2 --slow 1.5 --log "$W/lockstep.jsonl"; wait $REC; pack
say cli
set -f  # the PromQL below is no file pattern
for c in nodes events "detect --since 1h" "jobs --since 1h" "top --count 1 --no-color" \
    "promql max_over_time(DCGM_FI_DEV_GPU_UTIL[1m]) --api http://127.0.0.1:9470 --since 10m --step 60s"; do
    echo "\$ ironsight $c"
    # shellcheck disable=SC2086
    COLUMNS=250 ours ironsight --collector 127.0.0.1:7070 $c 2>&1
    echo "exit $?"
done >"$W/cli.txt"
stop_collector
}

overhead() {  # the agent streaming to a collector on this machine: its CPU and memory at 0.1 s and 1 s
collector
runs="new:0.1 new:1 new:0.1 new:1"
if [ -n "$SITE" ] && ls .whl-old/*.whl >/dev/null 2>&1; then  # an earlier build beside it, interleaved
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site-old .whl-old/*.whl >>"$W/pip.txt" 2>&1
    runs="new:0.1 old:0.1 new:0.1 old:0.1 new:1"
fi
for run in $runs; do
    version=${run%:*} interval=${run#*:}
    path=$SITE; [ "$version" = old ] && path=/tmp/site-old:$SITE
    PYTHONPATH=$path "$PY" "$BIN/ironsight-agent" --collector 127.0.0.1:7070 --insecure --interval "$interval" \
        --state-dir "$W/agent-$version-$interval" >>"$W/agent-$version-$interval.log" 2>&1 &
    A=$!
    sleep 5  # imports and the first inventory are start-up, not steady state
    c0=$(awk '{print $14 + $15}' /proc/$A/stat)
    sleep 20
    c1=$(awk '{print $14 + $15}' /proc/$A/stat)
    echo "$version interval $interval: $((c1 - c0))/$(getconf CLK_TCK) CPU-s in 20 s, $(grep VmRSS /proc/$A/status)"
    kill -TERM $A; wait $A
done >"$W/overhead.txt" 2>&1
stop_collector
}

copy() {  # the agent's PCIe counters against the bytes a copy moved each way
collector
say copy
record copy 36
workload copy --seconds "$(secs 8)" --log "$W/copy.jsonl"; wait $REC
stop_collector
}

transfer() {  # a training loop starved by its host-to-device copies, the cores idle
collector
say transfer
record transfer 85
workload transfer --resident-seconds "$(secs 25)" --transfer-seconds "$(secs 40)" --log "$W/transfer.jsonl"
wait $REC
stop_collector
}

pcie() {
say pcie
python3 tools/pcie_probe.py >"$W/pcie.json" 2>"$W/pcie.err"
}

for step in ${STEPS:-probe traces}; do "$step"; pack; done
say done
