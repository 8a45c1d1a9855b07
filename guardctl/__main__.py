from guardctl.main import main

raise SystemExit(main())
