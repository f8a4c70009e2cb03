"""`python -m services.applications`: runs the applications service until SIGTERM/SIGINT."""

from services.applications.server import run
from services.common.process import run_process

if __name__ == "__main__":
    run_process(run)
