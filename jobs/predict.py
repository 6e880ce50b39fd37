"""Ray Job recipe: `raypipe predict` as a script for `ray job submit`.

    python jobs/predict.py --config jobs/configs/predict.yaml --run RUN --manifest NEW.csv
    ray job submit --working-dir . -- \
        python jobs/predict.py --config jobs/configs/predict.yaml --run RUN --manifest NEW.csv

It takes exactly the flags of the CLI command; see `raypipe predict --help`.
"""

import sys

from raypipe.cli import main

if __name__ == "__main__":
    main(["predict", *sys.argv[1:]])
