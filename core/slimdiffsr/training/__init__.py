"""Training, one stack for every stage: ``config`` (dataclass configs, the one YAML loader),
``args`` (the scripts' command line), ``data`` (resumable crop stream, validation pairs), ``loop``
(Accelerate loop: checkpoints, exact resume, logging), and the stages ``uncertainty`` (0),
``teacher`` (1) and ``distill`` (2); ``perceptual`` fine-tunes on a cached teacher-output set."""
