"""ddfa-blender on a render farm: the Open Job Description job in ``capture_job/``
and the scripts its actions run (``job_step.py``), plus ``job_params.py`` to
prepare a submission. The per-clip work itself is shared with the one-machine
path, ``scripts/capture.py``."""
