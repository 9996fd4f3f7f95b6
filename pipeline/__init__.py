"""telnyx-archiver: archive Telnyx call recordings into your own bucket, verified, then delete them."""

__version__ = "0.1.0"
