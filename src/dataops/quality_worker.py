"""The process behind `QualityWorker`: imports Great Expectations at once, then waits for one
pickled request (settings, suites, run id) on stdin and answers with a pickled result on stdout."""

from __future__ import annotations

import os
import pickle
import sys
import traceback


def main() -> None:
    # The answer goes to the real stdout; anything GX or a library prints goes to stderr (the log).
    answer = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())

    import great_expectations  # noqa: F401  (the slow import, overlapping the parent's build)

    from dataops.errors import DataOpsError
    from dataops.quality import run_quality

    request = sys.stdin.buffer.read()
    if not request:
        return
    try:
        result: tuple[bool, object] = (True, run_quality(*pickle.loads(request)))
    except DataOpsError as error:
        result = (False, str(error))
    except Exception as error:  # a bug: keep its traceback for the report
        result = (False, "quality checks crashed:\n" + "".join(traceback.format_exception(error)))
    answer.write(pickle.dumps(result))
    answer.close()


if __name__ == "__main__":
    main()
