from guardctl.cli import main

raise SystemExit(main())
