from robot.cli import main

raise SystemExit(main())
