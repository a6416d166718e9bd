#!/bin/sh
# /usr/bin/storybot on the board. The robot package and its cross-built kernel live in
# /usr/lib/storybot rather than in site-packages, so one bundle serves whichever Python
# 3.9+ the image has. That directory goes first on sys.path (not through PYTHONPATH or
# `-m`, which both put the current directory first: a `robot/` folder wherever the user
# stands would be imported instead). STORYBOT_HOME and STORYBOT_PYTHON let a test run an
# installed tree that is not at / (e.g. with an emulated Python).
#
# Python runs lean, as memory is the board's limit: -I ignores PYTHON* variables and the
# user's site directory, -S skips the site module (its path set-up and .pth files), so
# the image's site-packages (cffi) is added by hand: buildroot's lib/pythonX.Y/site-packages
# or Debian's lib/python3/dist-packages. `ask` goes to the lean client (storybot_ask.py:
# json and socket only), which hands anything unusual to the full one. Measured in the
# VM: docs/duo.md, "Memory diet".
STORYBOT_HOME=${STORYBOT_HOME:-/usr/lib/storybot}
# STORYBOT_PYTHON may hold a command with arguments, hence unquoted.
exec ${STORYBOT_PYTHON:-python3} -I -S -c 'import sys
sys.path.insert(0, sys.argv.pop(1))
v = "%d.%d" % sys.version_info[:2]
sys.path += [sys.prefix + "/lib/python" + v + "/site-packages", sys.prefix + "/lib/python3/dist-packages"]
if sys.argv[1:2] == ["ask"]:
    try:
        import storybot_ask
    except ImportError:
        pass
    else:
        sys.exit(storybot_ask.main(sys.argv[2:]))
from robot.cli import main
sys.exit(main())' "$STORYBOT_HOME" "$@"
