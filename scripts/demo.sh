#!/usr/bin/env bash
# make demo: back up a small sample snapshot tree into a local file store,
# list it, verify it, restore it into a second directory and compare.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=bin/snapshot-job
demo=$PWD/demo
rm -rf "$demo"
mkdir -p "$demo/source" "$demo/store"

# A sample snapshot volume: per-node folders of capture files and JSON
# event logs, an empty folder, a symlink, an odd name.
for node in node-a node-b node-c; do
  mkdir -p "$demo/source/$node"
  for i in 1 2 3; do
    head -c 200000 /dev/urandom > "$demo/source/$node/capture-$i.pcap"
    for j in $(seq 1 2000); do
      printf '{"ts":%d,"node":"%s","src":"10.0.%d.%d","dst":"10.1.0.1","proto":"http","status":200}\n' "$j" "$node" "$i" "$((j % 250))"
    done > "$demo/source/$node/events-$i.json"
  done
done
mkdir -p "$demo/source/empty-dir"
ln -s node-a/capture-1.pcap "$demo/source/latest.pcap"
echo "unicode" > "$demo/source/naïve name ☕.json"
chmod 0600 "$demo/source/node-b/capture-2.pcap"

export SNAPSHOT_CLOUD_PROVIDER=file
export SNAPSHOT_FILE_DIR=$demo/store
export SNAPSHOT_SOURCE_DIR=$demo/source
export SNAPSHOT_CLOUD_PREFIX=snapshots/
export SNAPSHOT_NAME=demo
export SNAPSHOT_LOG_FORMAT=text
export SNAPSHOT_TERMINATION_LOG=$demo/termination-log

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
step snapshot-job backup;  "$bin" backup
echo "termination message: $(cat "$demo/termination-log")"
step snapshot-job list;    "$bin" list
step snapshot-job verify;  "$bin" verify
step SNAPSHOT_RESTORE_DIR=demo/restored snapshot-job restore
SNAPSHOT_RESTORE_DIR=$demo/restored "$bin" restore

step compare source and restored tree
# The restore leaves its volume lock (.snapshot-job-lock) in the target:
# names starting with .snapshot-job- are the job's own, never archived.
listing() { (cd "$1" && find . -mindepth 1 -name '.snapshot-job-*' -prune -o -printf '%p %y %m %s %T@ %l\n' | LC_ALL=C sort); }
diff <(listing "$demo/source") <(listing "$demo/restored")
diff -r --no-dereference -x '.snapshot-job-*' "$demo/source" "$demo/restored"
echo "demo: the restored tree matches the source (content, types, modes, mtimes, links)"
