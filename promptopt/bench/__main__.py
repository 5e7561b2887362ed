from promptopt.bench.cli import main

raise SystemExit(main())
