"""`python -m services.disbursement`: runs the disbursement service until SIGTERM/SIGINT."""

from services.common.process import run_process
from services.disbursement.server import run

if __name__ == "__main__":
    run_process(run)
