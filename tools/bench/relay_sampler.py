#!/usr/bin/env python3
# The relay's side of the relay-abuse soak (tools/bench/relay-abuse-pinned.sh SAMPLE=1). Every 100 ms, one line:
#   s UNIXTIME ticks CPU_TICKS R RUNNABLE_THREADS D DISK_WAITING_THREADS slow SLOWLORIS_PROCESSES wait RUNQUEUE_WAIT_NS wal WAL_BYTES [thread:wchan ...]
# (CPU ticks of the relay, 100 a second; run-queue wait summed over its threads from /proc/PID/task/*/schedstat: time
# its threads were ready to run but had no CPU). Every 200 ms a thread writes 4 KiB and fdatasyncs a file next to
# OUTFILE:  fsync UNIXTIME MILLISECONDS. WAL_BYTES: the size of the SQLite write-ahead log file WALFILE (-1 without it
# or while it does not exist). Benchmark tooling only.
# usage: relay_sampler.py RELAYPID OUTFILE [WALFILE]
import os, sys, time, threading
pid = int(sys.argv[1]); out = open(sys.argv[2], 'w', buffering=1)
wal_path = sys.argv[3] if len(sys.argv) > 3 else None
def wal_bytes():
    try: return os.stat(wal_path).st_size if wal_path else -1
    except OSError: return -1
fsync_log = []
def prober():
    fd = os.open(os.path.join(os.path.dirname(os.path.abspath(sys.argv[2])), 'fsync-probe.dat'), os.O_WRONLY | os.O_CREAT, 0o600)
    while True:
        os.pwrite(fd, os.urandom(4096), 0)
        t = time.monotonic(); os.fdatasync(fd); d = time.monotonic() - t
        out.write('fsync %.3f %.1f\n' % (time.time(), d * 1000))
        time.sleep(0.2)
threading.Thread(target=prober, daemon=True).start()
while os.path.exists('/proc/%d' % pid):
    now = time.time()
    states = {}; dw = []; waitns = 0
    try:
        for tid in os.listdir('/proc/%d/task' % pid):
            try:
                waitns += int(open('/proc/%d/task/%s/schedstat' % (pid, tid)).read().split()[1])
                st = open('/proc/%d/task/%s/stat' % (pid, tid)).read()
                name = st[st.index('(')+1:st.rindex(')')]
                s = st[st.rindex(')')+2]
                states[s] = states.get(s, 0) + 1
                if s == 'D':
                    w = open('/proc/%d/task/%s/wchan' % (pid, tid)).read()
                    dw.append('%s:%s' % (name, w))
            except Exception: pass
        st = open('/proc/%d/stat' % pid).read().split(')')[1].split()
        ticks = int(st[11]) + int(st[12])
    except Exception: break
    it = globals().get('it', 0) + 1; globals()['it'] = it
    slow = globals().get('slow', 0)
    if it % 10 == 1:
      slow = 0
      for p in os.listdir('/proc'):
        if p.isdigit():
            try:
                if b'relay-abuse-slowloris' in open('/proc/%s/cmdline' % p, 'rb').read(): slow += 1
            except Exception: pass
      globals()['slow'] = slow
    out.write('s %.3f ticks %d R %d D %d slow %d wait %d wal %d %s\n' % (now, ticks, states.get('R', 0), states.get('D', 0), slow, waitns, wal_bytes(), ' '.join(dw)))
    time.sleep(0.1)
