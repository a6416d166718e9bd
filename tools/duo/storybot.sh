#!/bin/sh
# /usr/bin/storybot on the board. The robot package and its cross-built kernel live in
# /usr/lib/storybot rather than in site-packages, so one bundle serves whichever Python
# 3.9+ the image has. STORYBOT_HOME and STORYBOT_PYTHON let a test run an installed
# tree that is not at / (e.g. with an emulated Python).
STORYBOT_HOME=${STORYBOT_HOME:-/usr/lib/storybot}
PYTHONPATH="$STORYBOT_HOME${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONPATH
# STORYBOT_PYTHON may hold a command with arguments, hence unquoted.
exec ${STORYBOT_PYTHON:-python3} -m robot "$@"
