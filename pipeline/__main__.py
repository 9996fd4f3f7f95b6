"""`python -m pipeline` is `telnyx-archiver`."""

from pipeline.cli import main

main()
