#!/bin/sh
# The script the original's runshell.aal runs first (/share/magi/modules/runshell/test.sh):
# says where and when it ran.
echo "test.sh on $(hostname) at $(date -u +%Y-%m-%dT%H:%M:%SZ)"
