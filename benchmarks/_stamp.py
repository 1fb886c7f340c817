"""Prefixes every line of stdin with the seconds since this script started.

Used by wilkinghoff_head_to_head.sh to time epochs from logs; progress-bar
carriage returns count as line ends.
"""
import sys
import time

start = time.time()
buf = b""
out = sys.stdout.buffer
while True:
    chunk = sys.stdin.buffer.read1(65536) if hasattr(sys.stdin.buffer, "read1") else sys.stdin.buffer.read(1)
    if not chunk:
        break
    buf += chunk
    while True:
        cut = min([i for i in (buf.find(b"\n"), buf.find(b"\r")) if i >= 0], default=-1)
        if cut < 0:
            break
        line, buf = buf[:cut], buf[cut + 1:]
        if line.strip():
            out.write(b"%9.2f %s\n" % (time.time() - start, line))
            out.flush()
if buf.strip():
    out.write(b"%9.2f %s\n" % (time.time() - start, buf))
