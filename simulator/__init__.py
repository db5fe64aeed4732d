"""The built-in simulator: a faithful fake of the OpenAI Images API, used as the upstream by
`make run` without an OpenAI key, by the tests and by the benchmarks (`gateway simulator`).

It is an independent oracle: it imports nothing from `gateway`. Its token rules, images, errors
and faults are written from the API reference on their own, so a test that checks the gateway
against it does not check the gateway against itself.

    app.py      the aiohttp app, its routes and command-line options
    wire.py     what arrived: the raw request, multipart parts, an edit's input images
    params.py   the API's parameters, checked as the API checks them, into an ImageJob
    usage.py    the token model (output table, tiles of input images, partial images, ...)
    images.py   deterministic PNGs to answer with, and the size of the images an edit sends
    respond.py  JSON and event-stream answers, with faults applied
    state.py    configuration, recorded requests, served files
    faults.py   the fault syntax (`x-simulator-fault: error:500`, `cut:2`, ...)
    errors.py   errors in the API's shape and wording
"""

from simulator.app import (
    SIMULATOR_STATE,
    RecordedFile,
    RecordedRequest,
    SimulatorConfig,
    SimulatorState,
    add_simulator_arguments,
    config_from_args,
    create_simulator_app,
    run_simulator,
)

__all__ = [
    "SIMULATOR_STATE",
    "RecordedFile",
    "RecordedRequest",
    "SimulatorConfig",
    "SimulatorState",
    "add_simulator_arguments",
    "config_from_args",
    "create_simulator_app",
    "run_simulator",
]
