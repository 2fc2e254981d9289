"""``python -m lambda_destinations``: the same command as ``lambda-destinations``."""

from lambda_destinations._entry import main

main()
