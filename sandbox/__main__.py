"""`python -m sandbox ...` is the same as the `rft-sandbox` console script."""

from sandbox.cli import main

raise SystemExit(main())
