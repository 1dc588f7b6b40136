"""The process behind `QualityWorker`: imports Great Expectations and warms it up at once, waits
for one pickled request (settings, suites, run id) on stdin, answers with a pickled result on
stdout, then renders the run's Data Docs. Exit code 3 when only the Data Docs failed."""

from __future__ import annotations

import os
import pickle
import sys
import traceback


def main() -> None:
    # The answer goes to the real stdout; anything GX or a library prints goes to stderr (the log).
    answer = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())

    from dataops.errors import DataOpsError
    from dataops.quality import validate, warm_up

    try:
        warm_up()  # overlaps the parent's build; the checks then start warm
    except Exception:  # only a missed speed-up: the real run reports any real problem
        traceback.print_exc()

    request = sys.stdin.buffer.read()
    if not request:
        return
    validation = None
    try:
        validation = validate(*pickle.loads(request))
        result: tuple[bool, object] = (True, validation.report)
    except DataOpsError as error:
        result = (False, str(error))
    except Exception as error:  # a bug: keep its traceback for the report
        result = (False, "quality checks crashed:\n" + "".join(traceback.format_exception(error)))
    answer.write(pickle.dumps(result))
    answer.close()
    if validation is not None:
        try:
            validation.build_data_docs()
        except Exception:
            traceback.print_exc()
            sys.exit(3)


if __name__ == "__main__":
    main()
