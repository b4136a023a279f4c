import sys

from transferlab.core.native_logs import quiet_tensorflow

quiet_tensorflow()  # before the CLI imports Keras (TRANSFERLAB_TF_LOGS=1 shows TensorFlow's lines)

from transferlab.cli import main  # noqa: E402

sys.exit(main())
