from hrank_ssd.cli.main import main

raise SystemExit(main())
