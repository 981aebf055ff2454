"""``python -m client``: wait for the server, then show example calls and their answers."""

from __future__ import annotations

import argparse
import json
import sys

from client import DEFAULT_URL, ClientError, MovieRecClient


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m client", description=__doc__)
    p.add_argument(
        "command",
        choices=["wait", "demo"],
        help="wait: until the model answers; demo: example calls",
    )
    p.add_argument("--url", default=DEFAULT_URL)
    p.add_argument("--timeout", type=float, default=120.0)
    args = p.parse_args(argv)
    try:
        api = MovieRecClient.connect(args.url, timeout=args.timeout)
        if args.command == "demo":
            for body in (
                {"user_id": 196, "movie_id": 242},
                {"pairs": [[196, 242], [186, 302]]},
                {"user_id": 196, "k": 5},
                {"user_id": 99999, "k": 5},
            ):
                status, answer = api.request("POST", f"/predictions/{api.model}", body)
                print(
                    f"POST /predictions/{api.model} {json.dumps(body)}\n  -> {status} "
                    f"{json.dumps(answer)}\n"
                )
    except ClientError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
