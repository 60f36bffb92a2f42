"""`python -m trainer_plugin ...`: the trainer side's commands (see trainer_plugin/cli.py)."""

from trainer_plugin.cli import main

raise SystemExit(main())
