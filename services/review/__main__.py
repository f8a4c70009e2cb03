"""`python -m services.review`: the review service."""

from services.common.process import run_process
from services.review.server import run

if __name__ == "__main__":
    run_process(run)
