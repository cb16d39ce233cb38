"""Launch a moto server (S3, STS, IAM, ...) for the integration tests.

Usage: .venv/bin/python scripts/moto_server.py --port PORT [--host HOST]

Thin wrapper around moto.server so that test-specific tweaks (e.g. IAM
enforcement) can be added here later without changing scripts/services.
"""

import argparse

from moto import server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    server.main(["--host", args.host, "--port", str(args.port)])


if __name__ == "__main__":
    main()
