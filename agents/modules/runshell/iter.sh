#!/bin/sh
# The script the original's runshell.aal runs last (/share/magi/modules/runshell/iter.sh):
# counts three iterations.
for i in 1 2 3; do
  echo "iteration $i"
done
