from anyrestore.cli import main

raise SystemExit(main())
