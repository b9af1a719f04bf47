"""``python -m sluicegate_cli``."""

from sluicegate_cli.main import main

raise SystemExit(main())
