#!/bin/sh
# The lab's demo workload (the container's init). It appends one record every
# {{ interval }} s (default 0.1) to {{ log }}: "<sequence number> <epoch seconds> <uptime seconds>",
# each made durable (fdatasync) before the next. After a restart it continues
# from the last durable number, so a lost record shows as a repeated number
# and downtime as a gap in the uptime column (host clock, 10 ms resolution).
trap 'exit 0' USR1 TERM INT
log={{ log }}
seq=0
if [ -s "$log" ]; then
  seq=$(tail -n 1 "$log" | cut -d' ' -f1)
fi
while :; do
  seq=$((seq + 1))
  read up idle < /proc/uptime
  echo "$seq $(date +%s) $up" >> "$log"
  sync -d "$log"
  sleep {{ interval }}
done
