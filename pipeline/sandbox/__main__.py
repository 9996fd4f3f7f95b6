"""`python -m pipeline.sandbox --port 8020 ...`: the same as `telnyx-archiver sandbox`."""

from pipeline.sandbox.command import sandbox_command

if __name__ == "__main__":
    sandbox_command(prog_name="python -m pipeline.sandbox")
