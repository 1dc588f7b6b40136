"""The process behind `QualityWorker`: imports Great Expectations and warms it up at once, waits
for one pickled request (settings, suites, run id) on stdin, answers on stdout with a pickled
(kind, payload): the report, a user error's one line, or a crash's one line, whose traceback it
writes to stderr (the worker's log). Then it draws the run's Data Docs; exit code 3 when only
those failed."""

from __future__ import annotations

import os
import pickle
import sys
import traceback


def _one_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {' '.join(str(error).split())}"[:300]


def main() -> None:
    # The answer goes to the real stdout; anything GX or a library prints goes to stderr (the log).
    answer = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())

    from dataops.core.errors import DataOpsError
    from dataops.quality.suites import ANSWER_CRASH, ANSWER_ERROR, ANSWER_REPORT, validate, warm_up

    try:
        warm_up()  # overlaps the parent's build; the checks then start warm
    except Exception:  # only a missed speed-up: the real run reports any real problem
        print("the warm-up failed (the run itself reports any real problem):", file=sys.stderr)
        traceback.print_exc()

    request = sys.stdin.buffer.read()
    if not request:
        return
    validation = None
    try:
        validation = validate(*pickle.loads(request))
        result: tuple[str, object] = (ANSWER_REPORT, validation.report)
    except DataOpsError as error:
        result = (ANSWER_ERROR, str(error))
    except Exception as error:  # a bug or a broken installation: the log keeps how it happened
        print("the quality checks crashed:", file=sys.stderr)
        traceback.print_exc()
        sys.stderr.flush()
        result = (ANSWER_CRASH, _one_line(error))
    answer.write(pickle.dumps(result))
    answer.close()
    if validation is not None:
        try:
            validation.build_data_docs()
        except Exception:
            print("drawing the Data Docs failed:", file=sys.stderr)
            traceback.print_exc()
            sys.exit(3)


if __name__ == "__main__":
    main()
