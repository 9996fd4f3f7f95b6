"""The baseline: the sequential script a user would write with the official `telnyx` SDK.

For each recording of the SDK's auto-paginating list: download its mp3 with urllib, upload it
with boto3 put_object, delete it from Telnyx. No transcriptions, no metadata, no verification:
less work than the archiver does, which only favours the baseline.

Deleting while paging by number shifts the later pages, so a single pass skips recordings; the
script reports how many it archived, and the caller counts what is left in Telnyx.

    AWS_ENDPOINT_URL=http://127.0.0.1:PORT .venv/bin/python bench/baseline_sdk.py \
        --base-url http://127.0.0.1:8020/v2 --api-key sandbox-key --bucket bench --prefix baseline

Prints one JSON line: archived, wall_s, recordings_per_s.
"""

from __future__ import annotations

import argparse
import json
import time
import urllib.request

import boto3
import telnyx


def archive_all(client: telnyx.Telnyx, s3, bucket: str, prefix: str, page_size: int) -> int:
    archived = 0
    for rec in client.recordings.list(page_size=page_size):
        with urllib.request.urlopen(rec.download_urls.mp3) as response:
            audio = response.read()
        s3.put_object(Bucket=bucket, Key=f"{prefix}/{rec.id}.mp3", Body=audio)
        client.recordings.delete(rec.id)
        archived += 1
    return archived


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--prefix", default="baseline")
    parser.add_argument("--page-size", type=int, default=20, help="the API's default page size")
    args = parser.parse_args()

    client = telnyx.Telnyx(api_key=args.api_key, base_url=args.base_url)
    s3 = boto3.client("s3")
    started = time.perf_counter()
    archived = archive_all(client, s3, args.bucket, args.prefix, args.page_size)
    wall = time.perf_counter() - started
    print(
        json.dumps(
            {
                "archived": archived,
                "wall_s": wall,
                "recordings_per_s": archived / wall if wall > 0 else 0.0,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
