from promptopt.cli import main

raise SystemExit(main())
