"""Serve the pipeline as a scheduled deployment (needs a real Prefect server: `make serve` starts one).

    PREFECT_API_URL=http://127.0.0.1:4200/api python -m flows.serve [--cron "0 3 * * 1"] [--timezone UTC]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from prefect.schedules import Cron

from flows.pipeline import pipeline
from transferlab.core.interrupts import stop_on_interrupts

DEPLOYMENT = "weekly-retrain"
DEFAULT_CRON, DEFAULT_TIMEZONE = "0 3 * * 1", "UTC"  # Mondays 03:00, in an explicit timezone


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cron", default=DEFAULT_CRON)
    parser.add_argument("--timezone", default=DEFAULT_TIMEZONE)
    parser.add_argument("--workspace", default=str(Path.cwd()))
    parser.add_argument("--name", default=DEPLOYMENT)
    args = parser.parse_args(argv)
    stop_on_interrupts()  # a background `make serve` inherits SIGINT ignored: asyncio and Prefect would never see it
    try:  # Prefect's runner takes the first Ctrl-C itself and returns once its deployments are paused
        pipeline.serve(name=args.name, schedules=[Cron(args.cron, timezone=args.timezone)],
                       parameters={"workspace": args.workspace}, tags=["transferlab"],
                       description="Retrain on the current data; DVC skips what did not change.")
    except KeyboardInterrupt:  # a second Ctrl-C during that shutdown: no traceback either
        sys.exit(130)
    finally:
        print(f"flows.serve: stopped serving {args.name}", file=sys.stderr)


if __name__ == "__main__":
    main()
