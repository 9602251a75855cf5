from skintern.cli import main

raise SystemExit(main())
