"""A tiny Flask service instrumented with exporters/instrument.py (served by gunicorn in tests)."""

import os

from flask import Flask

from exporters.instrument import Instrumentation

app = Flask(__name__)
instr = Instrumentation()
instr.instrument_flask(app)


@app.get("/users/<int:user_id>")
def user(user_id: int):
    """Answer with the worker's pid, so a test sees which process served it."""
    with instr.db_query("select"):
        pass
    instr.cache_result(hit=user_id % 2 == 0)
    return {"id": user_id, "pid": os.getpid()}
