"""One thin CLI module per DVC stage: `python -m stages.<name>`."""

from transferlab.core.native_logs import quiet_tensorflow

quiet_tensorflow()  # before any stage module imports Keras (TRANSFERLAB_TF_LOGS=1 shows TensorFlow's lines)
